"""The 2D density benchmark's four generators (spec: introvae.md, "2D benchmark"), seeded and vectorised.

U ~ Uniform[0, 1) is drawn independently per use; every sample comes from the given torch.Generator.
"""
import math

import torch

DATASETS = ("8gaussians", "2spirals", "checkerboard", "rings")
# the square the metrics histogram and the gnELBO grid cover, per dataset
SQUARE_HALF_WIDTH = {"8gaussians": 2.0, "2spirals": 4.0, "checkerboard": 4.0, "rings": 4.0}


def _uniform(n: int, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device)


def eight_gaussians(n: int, generator: torch.Generator, device="cpu") -> torch.Tensor:
    s = 1.0 / math.sqrt(2.0)
    centres = 2.0 * torch.tensor([(1, 0), (-1, 0), (0, 1), (0, -1), (s, s), (s, -s), (-s, s), (-s, -s)],
                                 dtype=torch.float32, device=device)  # (8, 2)
    which = torch.randint(8, (n,), generator=generator, device=device)
    points = centres[which] + 0.02 * torch.randn(n, 2, generator=generator, device=device)
    return points / 1.414


def two_spirals(n: int, generator: torch.Generator, device="cpu") -> torch.Tensor:
    half = n // 2
    turn = torch.sqrt(_uniform(half, generator, device)) * 540 * (2 * math.pi) / 360  # (half,)
    x = -torch.cos(turn) * turn + 0.5 * _uniform(half, generator, device)
    y = torch.sin(turn) * turn + 0.5 * _uniform(half, generator, device)
    arm = torch.stack([x, y], dim=1)  # (half, 2)
    points = torch.cat([arm, -arm], dim=0) / 3.0
    if n % 2:  # an odd batch: one more point from the first arm's distribution, mirrored
        points = torch.cat([points, points[:1]], dim=0)
    return points + 0.1 * torch.randn(n, 2, generator=generator, device=device)


def checkerboard(n: int, generator: torch.Generator, device="cpu") -> torch.Tensor:
    x1 = 4 * _uniform(n, generator, device) - 2
    column = torch.randint(2, (n,), generator=generator, device=device).float()
    x2 = _uniform(n, generator, device) - 2 * column + torch.floor(x1) % 2
    return torch.stack([x1, x2], dim=1) * 2


def rings(n: int, generator: torch.Generator, device="cpu", points_per_ring: int = 1024) -> torch.Tensor:
    radii = torch.tensor([1.0, 0.75, 0.5, 0.25], device=device)
    angles = torch.arange(points_per_ring, device=device) * (2 * math.pi / points_per_ring)
    circle = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)  # (P, 2)
    support = (radii[:, None, None] * circle[None]).reshape(-1, 2) * 3.0  # (4P, 2): equal points per ring
    which = torch.randint(len(support), (n,), generator=generator, device=device)  # resampled with replacement
    return support[which] + 0.08 * torch.randn(n, 2, generator=generator, device=device)


GENERATORS = {"8gaussians": eight_gaussians, "2spirals": two_spirals, "checkerboard": checkerboard, "rings": rings}


def sample_2d(dataset: str, n: int, generator: torch.Generator, device="cpu") -> torch.Tensor:
    """n points (n, 2) of the named dataset."""
    return GENERATORS[dataset](n, generator, device)
