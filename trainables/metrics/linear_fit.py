"""Linear maps between latent spaces: the 3-epoch Adam fit of the write-up and the closed-form optimum.

Every function takes optional leading batch dimensions (a population of models): inputs (..., N, d_in), targets
(..., N, d_out), broadcasting between them (the true latents are shared by all members). A batched fit is the same
computation as one fit per member: Adam is elementwise and each member's loss only touches its own map.
"""
import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LinearMap:
    weight: torch.Tensor  # (..., d_in, d_out)
    bias: torch.Tensor  # (..., d_out)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias.unsqueeze(-2)  # (..., N, d_out)


def fit_linear_lstsq(inputs: torch.Tensor, targets: torch.Tensor) -> LinearMap:
    """Least-squares affine map inputs (..., N, d_in) -> targets (..., N, d_out), solved in float64."""
    batch = torch.broadcast_shapes(inputs.shape[:-2], targets.shape[:-2])
    ones = torch.ones(*inputs.shape[:-1], 1, dtype=torch.float64, device=inputs.device)
    design = torch.cat([inputs.double(), ones], dim=-1).expand(*batch, *inputs.shape[-2:-1], inputs.shape[-1] + 1)
    right = targets.double().expand(*batch, *targets.shape[-2:])
    solution = torch.linalg.lstsq(design.cpu(), right.cpu()).solution.to(inputs.device)  # (..., d_in+1, d_out)
    return LinearMap(solution[..., :-1, :].to(inputs.dtype), solution[..., -1, :].to(inputs.dtype))


def fit_linear_adam(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    generator: torch.Generator,
    epochs: int = 3,
    batch_size: int = 64,
    learning_rate: float = 1e-2,
) -> LinearMap:
    """The write-up's protocol: an affine map trained by Adam on shuffled minibatches of MSE for `epochs` epochs.

    Initialised like torch's nn.Linear (U(±1/√d_in)) but from `generator`, so the fit is reproducible; batched
    members share the initial map and the shuffling (as lone fits from the same generator state would).
    """
    batch = torch.broadcast_shapes(inputs.shape[:-2], targets.shape[:-2])
    d_in, d_out = inputs.shape[-1], targets.shape[-1]
    bound = 1.0 / math.sqrt(d_in)

    def init(*shape):
        draw = (torch.rand(*shape, generator=generator, device=inputs.device) * 2 - 1) * bound
        return draw.expand(*batch, *shape).clone().requires_grad_()

    weight, bias = init(d_in, d_out), init(d_out)
    optimiser = torch.optim.Adam([weight, bias], lr=learning_rate)
    inputs, targets = inputs.detach(), targets.detach()
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(inputs.shape[-2], generator=generator, device=inputs.device)
            for rows in order.split(batch_size):
                error = inputs[..., rows, :] @ weight + bias.unsqueeze(-2) - targets[..., rows, :]
                loss = error.pow(2).mean(dim=(-2, -1)).sum()  # each member's own mean; the sum keeps them apart
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
    return LinearMap(weight.detach(), bias.detach())


def r2_score(predictions: torch.Tensor, targets: torch.Tensor, min_variance: float = 1e-12) -> torch.Tensor:
    """Variance-weighted R² = 1 − SS_res / SS_tot over the target dimensions that vary, per batch member.

    Target dimensions with variance ≤ `min_variance` are left out (R² is undefined there); NaN where none vary.
    predictions, targets: (..., N, d) -> (...,).
    """
    predictions, targets = torch.broadcast_tensors(predictions.double(), targets.double())
    centred = targets - targets.mean(dim=-2, keepdim=True)
    varying = centred.pow(2).mean(dim=-2) > min_variance  # (..., d)
    residual = ((predictions - targets).pow(2).sum(dim=-2) * varying).sum(dim=-1)
    total = (centred.pow(2).sum(dim=-2) * varying).sum(dim=-1)
    return torch.where(varying.any(dim=-1), 1.0 - residual / total, torch.full_like(total, float("nan")))
