"""2D benchmark metrics (spec: introvae.md, "2D benchmark" metrics): histogram KL and JSD, gnELBO on a grid,
active prior modes and the normalised assignment entropy."""
import math
from collections.abc import Callable

import numpy as np
import torch

HISTOGRAM_BINS = 100
ACTIVE_RESPONSIBILITY = 1e-3  # r̄_k above this (and w_k ≥ 1/K²) counts a prior mode as used
# points per negative_elbo chunk {on a GPU?: chunk}. A CPU keeps a chunk's MC KL joint (100 × 4096 × K floats) near its
# caches; a GPU pays ~20 µs of host time per op per chunk (a 1024² grid in 4096s is ~20,000 launches for a mixture),
# so it takes 8× fewer, larger chunks: 100 × 32768 × 64 floats = 0.84 GB, within a quarter of a 40 GB GPU
ELBO_CHUNK = {False: 4096, True: 32768}


def histogram(points: torch.Tensor, half_width: float, bins: int = HISTOGRAM_BINS) -> np.ndarray:
    """density=True 2D histogram over the square [−h, h]² (bins × bins); points outside are dropped."""
    xy = points.detach().cpu().double().numpy()
    edges = np.linspace(-half_width, half_width, bins + 1)
    density, _, _ = np.histogram2d(xy[:, 0], xy[:, 1], bins=[edges, edges], density=True)
    return density


def _kl_batchmean(target: np.ndarray, log_input: np.ndarray) -> float:
    """torch's kl_div(log_input, target, 'batchmean'): Σ target·(log target − log_input) / rows, 0·log 0 = 0."""
    safe = np.where(target > 0, target, 1.0)
    return float(np.sum(np.where(target > 0, target * (np.log(safe) - log_input), 0.0)) / target.shape[0])


def histogram_kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p ‖ q) as the reference computes it: kl_div(log(q + 1e-14), p, 'batchmean')."""
    return _kl_batchmean(p, np.log(q + 1e-14))


def histogram_jsd_reference(p: np.ndarray, q: np.ndarray) -> float:
    """The reference's 'JSD': ½(KL(m ‖ p) + KL(m ‖ q)), m = (p + q)/2 (reversed from the textbook direction)."""
    m = 0.5 * (p + q)
    return 0.5 * (_kl_batchmean(m, np.log(p + 1e-14)) + _kl_batchmean(m, np.log(q + 1e-14)))


def histogram_jsd(p: np.ndarray, q: np.ndarray) -> float:
    """Textbook JSD: ½(KL(p ‖ m) + KL(q ‖ m)), on the same scale."""
    m = 0.5 * (p + q)
    return 0.5 * (_kl_batchmean(p, np.log(m + 1e-14)) + _kl_batchmean(q, np.log(m + 1e-14)))


def square_grid(half_width: float, resolution: int, device="cpu") -> torch.Tensor:
    """resolution² points covering [−h, h]², row-major: (resolution², 2)."""
    axis = torch.linspace(-half_width, half_width, resolution, device=device)
    gx, gy = torch.meshgrid(axis, axis, indexing="xy")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)


@torch.no_grad()
def negative_elbo(model, x: torch.Tensor, generator: torch.Generator | None = None,
                  chunk: int | None = None) -> torch.Tensor:
    """KL(q(z|x) ‖ p) (closed form or 100-sample MC) + SSE of the decode of the posterior mean, per point; no
    constants. Chunked so a 1024² grid fits in memory: (N, 2) -> (N,). Default chunk: ELBO_CHUNK by device."""
    values = []
    for part in x.split(chunk or ELBO_CHUNK[x.device.type == "cuda"]):
        mu, logvar = model.encode(part)
        sse = (model.decode(mu) - part).pow(2).sum(dim=1)
        values.append(model.prior.kl_from_posterior(mu, logvar, generator) + sse)
    return torch.cat(values)


def gnelbo(negative_elbo_data: torch.Tensor, negative_elbo_grid: torch.Tensor) -> float:
    """Grid-normalised ELBO: mean over data / (sum over grid + sum over data). Tables show it ×1e7."""
    total = negative_elbo_grid.double().sum() + negative_elbo_data.double().sum()
    return float(negative_elbo_data.double().mean() / total)


def mode_usage(log_weights: torch.Tensor, mean_responsibility: torch.Tensor) -> tuple[int, float]:
    """(active modes, normalised assignment entropy −Σ r̄ log r̄ / log K)."""
    num_components = len(log_weights)
    used = (log_weights.exp() >= 1.0 / num_components**2) & (mean_responsibility > ACTIVE_RESPONSIBILITY)
    r = mean_responsibility.double()
    entropy = float(-(r * torch.log(r.clamp_min(1e-30))).sum() / math.log(num_components))
    return int(used.sum()), entropy


def density_image(values: Callable[[torch.Tensor], torch.Tensor], half_width: float, resolution: int,
                  device="cpu") -> np.ndarray:
    """exp(−negELBO) on a resolution² grid (on `device`, the model's) as an image (rows: y, columns: x), for plots."""
    grid = square_grid(half_width, resolution, device)
    return torch.exp(-values(grid)).reshape(resolution, resolution).cpu().numpy()
