"""Recovery metrics on constructed encoders with known answers (spec: bias_grid.md, "Metrics")."""
import math

import pytest
import torch

from trainables.data.biased_grid import GridSpec, enumerated_test_set, render
from trainables.metrics.linear_fit import fit_linear_adam, fit_linear_lstsq, r2_score
from trainables.metrics.recovery import recovery_scores

TEST_SET = enumerated_test_set(GridSpec())
N, D = TEST_SET.latents.shape


def rng(seed=0):
    return torch.Generator().manual_seed(seed)


def rotation(seed=0) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=rng(seed)))
    return q


def affine_encoder(a: torch.Tensor, b: torch.Tensor, logvar: float = -4.0):
    """ẑ = z_true A + b, read back from the image itself (so it is a real function of x)."""

    def encode(x):
        v = x.reshape(-1, 3, 7, 3, 7)[:, :, 0, :, 0].reshape(-1, 9)  # one pixel per square (noise-free)
        mu = torch.logit(v) @ a + b
        return mu, torch.full_like(mu, logvar)

    return encode


def exact_decoder(a: torch.Tensor, b: torch.Tensor):
    return lambda z: render(torch.sigmoid((z - b) @ torch.linalg.inv(a)), GridSpec())


def test_identity_like_encoder_recovers_everything():
    a, b = 0.7 * rotation(), torch.linspace(-1, 1, D)
    scores = recovery_scores(affine_encoder(a, b), exact_decoder(a, b), TEST_SET, rng())
    assert scores.pmi_lstsq < 1e-8
    assert scores.pmi < 2e-3  # 3 epochs of Adam come close to the optimum
    assert scores.r2_true_to_learned == pytest.approx(1.0, abs=1e-6)
    assert scores.r2_learned_to_true == pytest.approx(1.0, abs=1e-6)
    assert scores.decoder_mse < 2e-3
    assert scores.active_dims.item() == D


def test_constant_encoder_scores_perfect_pmi_but_zero_recovery():
    """The documented hole: PMI measures error in the learned space, so a collapsed encoder gets PMI 0."""
    constant = lambda x: (torch.full((len(x), D), 0.3), torch.zeros(len(x), D))  # noqa: E731
    mean_image = lambda z: torch.full((len(z), 441), 0.5)  # noqa: E731
    scores = recovery_scores(constant, mean_image, TEST_SET, rng())
    assert scores.pmi < 1e-6
    assert scores.pmi_lstsq < 1e-10
    assert scores.r2_learned_to_true == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(scores.r2_true_to_learned.item())
    assert scores.active_dims.item() == 9  # mean 0.3 gives KL 0.045 nats per dim: "active" counts KL, not information


def test_collapsed_posterior_has_no_active_dimensions():
    collapsed = lambda x: (torch.zeros(len(x), D), torch.zeros(len(x), D))  # noqa: E731
    scores = recovery_scores(collapsed, lambda z: torch.zeros(len(z), 441), TEST_SET, rng())
    assert scores.active_dims.item() == 0
    assert scores.mean_kl.item() == 0.0


def test_independent_noise_encoder_recovers_nothing():
    noise = torch.randn(N, D, generator=rng(5))
    scores = recovery_scores(lambda x: (noise, torch.zeros_like(noise)), lambda z: z.new_zeros(len(z), 441),
                             TEST_SET, rng())
    assert scores.r2_learned_to_true == pytest.approx(0.0, abs=0.01)
    assert scores.r2_true_to_learned == pytest.approx(0.0, abs=0.01)
    assert scores.pmi == pytest.approx(1.0, abs=0.05)  # all of ẑ's unit variance is left unexplained


def test_active_dimensions_count_latents_above_a_hundredth_of_a_nat():
    def half_used(x):
        mu = torch.zeros(len(x), D)
        mu[:, :4] = torch.logit(x.reshape(-1, 3, 7, 3, 7)[:, :, 0, :, 0].reshape(-1, 9))[:, :4]
        return mu, torch.zeros_like(mu)

    assert recovery_scores(half_used, lambda z: z.new_zeros(len(z), 441), TEST_SET, rng()).active_dims.item() == 4


def test_r2_known_values_and_adam_fit_approaches_least_squares():
    x = torch.randn(N, 3, generator=rng(1))  # the test set's size: the Adam protocol's step count depends on it
    assert r2_score(x, x).item() == 1.0
    assert r2_score(x.mean(0).expand_as(x), x).item() == pytest.approx(0.0, abs=1e-12)
    y = x @ torch.tensor([[0.9, -0.6], [0.5, 0.0], [0.0, 0.8]]) + 0.1 * torch.randn(N, 2, generator=rng(2))
    exact = (fit_linear_lstsq(x, y)(x) - y).pow(2).mean()
    adam = (fit_linear_adam(x, y, rng(3))(x) - y).pow(2).mean()
    assert exact.item() == pytest.approx(0.01, rel=0.05)
    assert exact <= adam < exact + 0.01


def _reference_adam_fit(inputs, targets, generator, epochs=3, batch_size=64, learning_rate=1e-2):
    """The protocol as autograd + torch.optim.Adam would run it, one fit: the written-out fit must equal it."""
    bound = 1.0 / math.sqrt(inputs.shape[-1])
    weight = ((torch.rand(inputs.shape[-1], targets.shape[-1], generator=generator) * 2 - 1) * bound)
    bias = ((torch.rand(targets.shape[-1], generator=generator) * 2 - 1) * bound)
    weight = weight.expand(*targets.shape[:-2], *weight.shape).clone().requires_grad_()
    bias = bias.expand(*targets.shape[:-2], *bias.shape).clone().requires_grad_()
    optimiser = torch.optim.Adam([weight, bias], lr=learning_rate)
    for _ in range(epochs):
        for rows in torch.randperm(inputs.shape[-2], generator=generator).split(batch_size):
            error = inputs[..., rows, :] @ weight + bias.unsqueeze(-2) - targets[..., rows, :]
            optimiser.zero_grad()
            error.pow(2).mean(dim=(-2, -1)).sum().backward()
            optimiser.step()
    return weight.detach(), bias.detach()


def test_written_out_adam_fit_is_torch_adam_on_autograd_gradients():
    x = TEST_SET.latents[:1000]  # (n, 9); 16 minibatches per epoch, the last one short
    y = torch.randn(3, 1000, 4, generator=rng(4)) + x[:, :4]  # three members' codes (3, n, 4)
    fitted = fit_linear_adam(x, y, rng(5))
    weight, bias = _reference_adam_fit(x, y, rng(5))
    torch.testing.assert_close(fitted.weight, weight, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fitted.bias, bias, atol=1e-5, rtol=1e-4)


def test_grouped_fit_equals_one_lone_fit_per_generator():
    x = TEST_SET.latents[:1000]
    y = torch.randn(2, 3, 1000, 4, generator=rng(6)) + x[:, :4]  # 2 groups (seeds) × 3 members
    grouped = fit_linear_adam(x, y, [rng(7), rng(8)])
    for group, seed in enumerate((7, 8)):
        lone = fit_linear_adam(x, y[group], rng(seed))
        torch.testing.assert_close(grouped.weight[group], lone.weight, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(grouped.bias[group], lone.bias, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(grouped.weight[0], grouped.weight[1], atol=1e-3)  # the groups really differ
