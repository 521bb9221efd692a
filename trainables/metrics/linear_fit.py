"""Linear maps between latent spaces: the 3-epoch Adam fit of the write-up and the closed-form optimum.

Every function takes optional leading batch dimensions (a population of models): inputs (..., N, d_in), targets
(..., N, d_out), broadcasting between them (the true latents are shared by all members). A batched fit is the same
computation as one fit per member: Adam is elementwise and each member's loss only touches its own map.
"""
import math
from collections.abc import Sequence
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
    generator: torch.Generator | Sequence[torch.Generator],
    epochs: int = 3,
    batch_size: int = 64,
    learning_rate: float = 1e-2,
) -> LinearMap:
    """The write-up's protocol: an affine map trained by Adam on shuffled minibatches of MSE for `epochs` epochs.

    Initialised like torch's nn.Linear (U(±1/√d_in)) but from `generator`, so the fit is reproducible; batched
    members share the initial map and the shuffling (as lone fits from the same generator state would).
    `generator` may also be a sequence of G generators: then the leading batch dimension of inputs/targets is G
    independent groups (a population's seeds), each fitted with its own initial map and shuffling, exactly as a lone
    fit from its generator, all in one batched computation.

    The gradient is written out (MSE of an affine map: 2/(n·d_out)·Xᵀ(XΘ − Y)) and Adam is torch's update rule
    written as tensor ops: ~11 ops per minibatch instead of autograd and an optimiser, which at this size are
    nearly all the cost (the fit is launch-bound: 924 minibatches for the 19,683 test images).
    """
    grouped = not isinstance(generator, torch.Generator)
    generators = list(generator) if grouped else [generator]
    if not grouped:  # one group: a leading dimension of 1, removed at the end
        inputs, targets = inputs.unsqueeze(0), targets.unsqueeze(0)
    num_rows, d_in, d_out = inputs.shape[-2], inputs.shape[-1], targets.shape[-1]
    device = inputs.device
    bound = 1.0 / math.sqrt(d_in)
    initial, orders = [], []
    for group_generator in generators:  # the draws of a lone fit, in its order: weight, bias, one order per epoch
        weight = (torch.rand(d_in, d_out, generator=group_generator, device=device) * 2 - 1) * bound
        bias = (torch.rand(d_out, generator=group_generator, device=device) * 2 - 1) * bound
        initial.append(torch.cat([weight, bias[None]]))  # (d_in + 1, d_out): the bias is the last row
        orders.append(torch.stack([torch.randperm(num_rows, generator=group_generator, device=device)
                                   for _ in range(epochs)]))  # (epochs, N)
    design = torch.cat([inputs.detach(), torch.ones_like(inputs[..., :1])], dim=-1)  # (G, ..., N, d_in + 1)
    targets = targets.detach()
    batch = torch.broadcast_shapes(design.shape[:-2], targets.shape[:-2])  # (G, ...)
    design, targets = _leading_ones(design, len(batch) + 2), _leading_ones(targets, len(batch) + 2)
    groups_first = (len(generators), *[1] * (len(batch) - 1))
    theta = torch.stack(initial).view(*groups_first, d_in + 1, d_out).expand(*batch, d_in + 1, d_out).clone()
    first_moment, second_moment = torch.zeros_like(theta), torch.zeros_like(theta)
    beta1, beta2, eps = 0.9, 0.999, 1e-8  # torch.optim.Adam's defaults
    step = 0
    for epoch in range(epochs):
        rows = torch.stack([order[epoch] for order in orders]).view(*groups_first, num_rows, 1)  # (G, 1.., N, 1)
        shuffled_x = torch.take_along_dim(design, rows, dim=-2)  # (G, ..., N, d_in + 1): each group its order
        shuffled_y = torch.take_along_dim(targets, rows, dim=-2)  # (G, ..., N, d_out)
        for start in range(0, num_rows, batch_size):
            x = shuffled_x[..., start:start + batch_size, :]  # (G, ..., n, d_in + 1)
            error = x @ theta - shuffled_y[..., start:start + batch_size, :]  # (G, ..., n, d_out)
            gradient = (x.mT @ error).mul_(2.0 / (error.shape[-2] * d_out))  # d mean(error²) / dΘ
            step += 1
            first_moment.lerp_(gradient, 1 - beta1)
            second_moment.mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
            denominator = (second_moment.sqrt() / math.sqrt(1 - beta2 ** step)).add_(eps)
            theta.addcdiv_(first_moment, denominator, value=-learning_rate / (1 - beta1 ** step))
    if not grouped:
        theta = theta[0]
    return LinearMap(theta[..., :-1, :], theta[..., -1, :])


def _leading_ones(tensor: torch.Tensor, dims: int) -> torch.Tensor:
    """`tensor` viewed with size-1 dimensions in front up to `dims` (torch.take_along_dim does not broadcast those)."""
    return tensor.view(*[1] * (dims - tensor.dim()), *tensor.shape)


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
