"""Linear maps between latent spaces: the 3-epoch Adam fit of the write-up and the closed-form optimum."""
import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LinearMap:
    weight: torch.Tensor  # (d_in, d_out)
    bias: torch.Tensor  # (d_out,)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias  # (N, d_out)


def fit_linear_lstsq(inputs: torch.Tensor, targets: torch.Tensor) -> LinearMap:
    """Least-squares affine map inputs (N, d_in) -> targets (N, d_out), solved in float64."""
    design = torch.cat([inputs.double(), torch.ones(len(inputs), 1, dtype=torch.float64, device=inputs.device)], 1)
    solution = torch.linalg.lstsq(design.cpu(), targets.double().cpu()).solution.to(inputs.device)  # (d_in+1, d_out)
    return LinearMap(solution[:-1].to(inputs.dtype), solution[-1].to(inputs.dtype))


def fit_linear_adam(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    generator: torch.Generator,
    epochs: int = 3,
    batch_size: int = 64,
    learning_rate: float = 1e-2,
) -> LinearMap:
    """The write-up's protocol: an affine map trained by Adam on shuffled minibatches of MSE for `epochs` epochs.

    Initialised like torch's nn.Linear (U(±1/√d_in)) but from `generator`, so the fit is reproducible.
    """
    d_in, d_out = inputs.shape[1], targets.shape[1]
    bound = 1.0 / math.sqrt(d_in)
    init = lambda *shape: (torch.rand(*shape, generator=generator, device=inputs.device) * 2 - 1) * bound  # noqa: E731
    weight = init(d_in, d_out).requires_grad_()
    bias = init(d_out).requires_grad_()
    optimiser = torch.optim.Adam([weight, bias], lr=learning_rate)
    inputs, targets = inputs.detach(), targets.detach()
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(len(inputs), generator=generator, device=inputs.device)
            for batch in order.split(batch_size):
                loss = (inputs[batch] @ weight + bias - targets[batch]).pow(2).mean()
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
    return LinearMap(weight.detach(), bias.detach())


def r2_score(predictions: torch.Tensor, targets: torch.Tensor, min_variance: float = 1e-12) -> float:
    """Variance-weighted R² = 1 − SS_res / SS_tot over the target dimensions that vary.

    Target dimensions with variance ≤ `min_variance` are left out (R² is undefined there); NaN if none vary.
    """
    variance = targets.double().var(dim=0, unbiased=False)  # (d,)
    varying = variance > min_variance
    if not bool(varying.any()):
        return float("nan")
    residual = (predictions.double() - targets.double())[:, varying].pow(2).sum()
    total = (targets.double() - targets.double().mean(dim=0))[:, varying].pow(2).sum()
    return float(1.0 - residual / total)
