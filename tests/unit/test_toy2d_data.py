"""The 2D generators' statistics (spec: introvae.md, "2D benchmark")."""
import math

import pytest
import torch

from trainables.data.toy2d import sample_2d


def points(name, n=40_000, seed=0):
    return sample_2d(name, n, torch.Generator().manual_seed(seed))


def test_eight_gaussians_has_eight_tight_equal_modes():
    x = points("8gaussians") * 1.414 / 2  # back to unit-circle centres
    angle = torch.atan2(x[:, 1], x[:, 0])
    which = torch.round(angle / (math.pi / 4)).long() % 8
    assert torch.bincount(which, minlength=8).float().div(len(x)).sub(1 / 8).abs().max() < 0.01
    assert x.norm(dim=1).sub(1).abs().max() < 0.06  # 0.02·N(0,1) noise, scaled by 1/2: ≤ 6σ


def test_two_spirals_are_point_symmetric_and_noisy():
    x = points("2spirals")
    assert x.mean(0).abs().max() < 0.03
    assert x.norm(dim=1).max() < 6.0
    assert torch.allclose(x[:20_000].norm(dim=1).mean(), x[20_000:].norm(dim=1).mean(), rtol=0.02)


def test_checkerboard_fills_alternate_squares():
    x = points("checkerboard") / 2
    assert x.min() >= -2 and x.max() < 2
    parity = (torch.floor(x[:, 0]) + torch.floor(x[:, 1])) % 2
    assert (parity == 0).all()
    cells = (torch.floor(x[:, 0]) + 2) * 4 + (torch.floor(x[:, 1]) + 2)
    assert len(torch.unique(cells)) == 8


def test_rings_have_four_radii_with_equal_mass():
    radius = points("rings").norm(dim=1)
    nearest = torch.argmin((radius[:, None] - torch.tensor([3.0, 2.25, 1.5, 0.75])).abs(), dim=1)
    assert torch.bincount(nearest, minlength=4).float().div(len(radius)).sub(0.25).abs().max() < 0.01
    for k, r in enumerate((3.0, 2.25, 1.5, 0.75)):
        assert radius[nearest == k].mean().item() == pytest.approx(r, abs=0.01)
