"""The generator's statistics and the enumerated test set (spec: bias_grid.md, "Data generator")."""
import math

import numpy as np
import pytest
import torch

from trainables.data.biased_grid import BiasedGridStream, GridSpec, enumerated_test_set, render

SPEC = GridSpec()


def expected_sigmoid_mean(mu: float) -> float:
    """E[sigmoid(z)], z ~ N(mu, 1), by numerical integration (independent of the generator's code)."""
    z = np.linspace(mu - 10, mu + 10, 200_001)
    density = np.exp(-0.5 * (z - mu) ** 2) / math.sqrt(2 * math.pi)
    return float(np.trapezoid(density / (1 + np.exp(-z)), z))


@pytest.mark.parametrize("bias", [0.0, 1.0, 2.5, 5.0])
def test_square_intensity_means_follow_the_bias(bias):
    stream = BiasedGridStream(bias, SPEC, seed=0)
    images, latents = stream.sample(20_000)
    squares = images.reshape(-1, 3, 7, 3, 7).mean(dim=(2, 4)).reshape(-1, 9)  # (N, 9): noise averages out
    assert latents.mean().item() == pytest.approx(bias, abs=0.01)
    assert latents.var().item() == pytest.approx(1.0, abs=0.02)
    assert squares.mean().item() == pytest.approx(expected_sigmoid_mean(bias), abs=0.003)


def test_pixel_noise_has_variance_one_quarter_and_mean_zero():
    stream = BiasedGridStream(1.0, SPEC, seed=3)
    images, latents = stream.sample(5_000)
    noise = images - render(torch.sigmoid(latents), SPEC)
    assert noise.mean().item() == pytest.approx(0.0, abs=0.002)
    assert noise.var().item() == pytest.approx(0.25, abs=0.002)


def test_each_latent_fills_its_own_square_row_major():
    v = torch.zeros(1, 9)
    v[0, 5] = 1.0  # square 5: row 1, column 2
    image = render(v, SPEC).reshape(21, 21)
    assert image[7:14, 14:21].eq(1).all()
    assert image.sum().item() == 49


def test_stream_is_seeded_and_fixed_sets_reuse_images():
    a, b, c = (BiasedGridStream(0.5, SPEC, seed=s) for s in (7, 7, 8))
    assert torch.equal(a.next_batch(16), b.next_batch(16))
    assert not torch.equal(a.next_batch(16), c.next_batch(16))
    fixed = BiasedGridStream(0.5, SPEC, seed=1, train_set_size=10)
    batch = fixed.next_batch(200)
    assert torch.unique(batch, dim=0).shape[0] <= 10


def test_enumerated_test_set_has_all_19683_unique_noise_free_images():
    test_set = enumerated_test_set(SPEC)
    assert test_set.images.shape == (19_683, 441)
    assert torch.unique(test_set.images, dim=0).shape[0] == 19_683
    assert torch.unique(test_set.intensities).tolist() == pytest.approx([0.1, 0.5, 0.9])
    assert torch.allclose(torch.sigmoid(test_set.latents), test_set.intensities, atol=1e-6)
    assert torch.allclose(render(test_set.intensities, SPEC), test_set.images)
    assert torch.unique(test_set.latents).tolist() == pytest.approx([-math.log(9), 0.0, math.log(9)], abs=1e-5)
