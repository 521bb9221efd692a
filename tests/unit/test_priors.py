"""Prior maths (spec: introvae.md, "Priors", "KL", "Adaptive variance clipping", "Responsibility regularisation")."""
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from models.mlp import mlp
from models.objectives import normalised_neg_entropy
from models.priors import (
    MixtureOfGaussiansPrior,
    StandardNormalPrior,
    VampPrior,
    diagonal_gaussian_log_prob,
    monte_carlo_kl,
    soft_clip_logvar,
)


def rng(seed=0):
    return torch.Generator().manual_seed(seed)


def mog(k=5, d=2, seed=0, learnable_weights=True):
    prior = MixtureOfGaussiansPrior(k, d, learnable_weights, generator=rng(seed))
    with torch.no_grad():
        prior.mu.mul_(3 * math.sqrt(k * d))  # spread the modes apart (the default init is tiny)
        prior.logvar.mul_(0.5)
        prior.logits.copy_(torch.randn(k, generator=rng(seed + 1)))
    return prior


class GaussianEncoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = mlp(2, 16, 1, 4)

    def forward(self, x):
        mu, logvar = self.net(x).chunk(2, dim=-1)
        return 2 * mu, logvar


def vamp(k=6):
    return VampPrior(torch.randn(k, 2, generator=rng(3)) * 2, 2, GaussianEncoder())


def test_one_component_mixture_equals_the_diagonal_gaussian():
    prior = MixtureOfGaussiansPrior(1, 3, generator=rng(0))
    z = torch.randn(50, 3, generator=rng(1))
    expected = Normal(prior.mu[0], (0.5 * prior.logvar[0]).exp()).log_prob(z).sum(-1)
    assert torch.allclose(prior.log_prob(z), expected, atol=1e-5)
    assert torch.allclose(diagonal_gaussian_log_prob(z, prior.mu[0], prior.logvar[0]), expected, atol=1e-5)


@pytest.mark.parametrize("make", [mog, vamp], ids=["mog", "vamp"])
def test_mixture_density_integrates_to_one(make):
    prior = make()
    axis = torch.linspace(-25, 25, 1001)
    gx, gy = torch.meshgrid(axis, axis, indexing="xy")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    with torch.no_grad():
        mass = prior.log_prob(grid).exp().sum() * (axis[1] - axis[0]) ** 2
    assert mass.item() == pytest.approx(1.0, abs=2e-3)


def mixture_marginal_cdf(prior, x: torch.Tensor, dim: int) -> torch.Tensor:
    mu, logvar, log_w = prior.components()
    standard = (x[:, None] - mu[None, :, dim]) / (0.5 * logvar[None, :, dim]).exp()
    return (log_w.exp()[None] * 0.5 * (1 + torch.erf(standard / math.sqrt(2)))).sum(-1)


@pytest.mark.parametrize("make", [mog, vamp], ids=["mog", "vamp"])
def test_samples_agree_with_log_prob(make):
    """Kolmogorov–Smirnov distance between sample marginals and the mixture's own CDF (n = 200,000)."""
    prior = make()
    with torch.no_grad():
        samples = prior.sample(200_000, rng(7))
        for dim in (0, 1):
            x = samples[:, dim].sort().values
            empirical = torch.arange(1, len(x) + 1) / len(x)
            ks = (mixture_marginal_cdf(prior, x, dim) - empirical).abs().max().item()
            assert ks < 0.006  # the KS 99.9% critical value at n = 200,000 is 1.95/√n ≈ 0.0044


def test_monte_carlo_kl_approaches_the_closed_form():
    standard = StandardNormalPrior(2)
    as_mixture = MixtureOfGaussiansPrior(1, 2, learnable_weights=False)
    with torch.no_grad():
        as_mixture.mu.zero_()
        as_mixture.logvar.zero_()
    mu, logvar = torch.randn(4, 2, generator=rng(2)), torch.randn(4, 2, generator=rng(3)) * 0.5
    exact = standard.kl_from_posterior(mu, logvar)
    reference = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1)
    assert torch.allclose(exact, reference, atol=1e-5)
    errors = [(monte_carlo_kl(as_mixture, mu, logvar, n, rng(4)) - exact).abs().max().item() for n in (100, 40_000)]
    assert errors[1] < 0.03 and errors[1] < errors[0]
    batch_mu, batch_logvar = torch.randn(4000, 2, generator=rng(5)), torch.randn(4000, 2, generator=rng(6)) * 0.5
    mean_mc = as_mixture.kl_from_posterior(batch_mu, batch_logvar, rng(8)).mean()
    assert mean_mc.item() == pytest.approx(standard.kl_from_posterior(batch_mu, batch_logvar).mean().item(), rel=0.01)


def test_soft_clipping_keeps_log_variances_in_bounds_and_leaves_the_inside_alone():
    low, high = torch.tensor([-2.0, 0.5]), torch.tensor([1.0, 0.5])  # the second dimension has hi = lo
    logvar = torch.linspace(-10, 10, 2001)[:, None].expand(-1, 2)
    clipped = soft_clip_logvar(logvar, low, high)
    assert (clipped[:, 0] >= low[0] - 1e-6).all() and (clipped[:, 0] <= high[0] + 1e-6).all()
    assert (clipped[:, 1] == 0.5).all()
    inside = (logvar[:, 0] + 0.5).abs() < 0.25  # well inside: ≥ 1.25 from both bounds, ≥ 4 softplus widths (0.3)
    assert torch.allclose(clipped[inside, 0], logvar[inside, 0], atol=5e-3)
    assert clipped[-1, 0].item() == pytest.approx(1.0, abs=1e-6) and clipped[0, 0].item() == pytest.approx(-2.0)


def test_clipping_bounds_are_frozen_from_the_components_at_that_moment():
    prior = mog()
    prior.freeze_variance_bounds()
    raw = prior.logvar.detach().clone()
    with torch.no_grad():
        prior.logvar.add_(torch.linspace(-5, 5, prior.logvar.numel()).reshape(prior.logvar.shape))
    _, clipped, _ = prior.components()
    assert (clipped >= raw.min(0).values - 1e-5).all() and (clipped <= raw.max(0).values + 1e-5).all()
    prior.clipping_enabled = False
    assert torch.equal(prior.components()[1], prior.logvar)


def test_responsibilities_sum_to_one_and_entropy_is_normalised():
    prior = mog(k=8)
    r = prior.responsibilities(torch.randn(3, 7, 2, generator=rng(9)))
    assert r.shape == (3, 7, 8)
    assert torch.allclose(r.sum(-1), torch.ones(3, 7), atol=1e-6)
    assert normalised_neg_entropy(torch.full((8,), 1 / 8)).item() == pytest.approx(-1.0, abs=1e-6)
    assert normalised_neg_entropy(torch.eye(8)[2]).item() == pytest.approx(0.0, abs=1e-6)


def test_uniform_weights_when_not_learnable_and_vamp_converts_with_its_logits():
    fixed = mog(learnable_weights=False)
    assert torch.allclose(fixed.log_weights().exp(), torch.full((5,), 0.2))
    prior = vamp()
    with torch.no_grad():
        prior.logits.copy_(torch.randn(6, generator=rng(4)))
    converted = prior.to_mixture_of_gaussians()
    z = torch.randn(20, 2, generator=rng(5))
    assert torch.allclose(converted.log_prob(z), prior.log_prob(z), atol=1e-5)
    assert torch.equal(converted.logits, prior.logits)  # the logits, not softmax(logits)


@pytest.mark.parametrize("make", [mog, vamp])
def test_a_frozen_prior_keeps_its_learned_weights(make):
    """The encoder step freezes the prior (models/freeze.py turns requires_grad off): its KL and samples must still
    use the learned mixture weights, not uniform ones."""
    from models.freeze import frozen

    prior = make()
    with torch.no_grad():
        prior.logits.copy_(torch.randn(prior.num_components, generator=rng(6)))
    z = torch.randn(20, 2, generator=rng(7))
    learned_weights, learned_density = prior.log_weights().detach(), prior.log_prob(z).detach()
    with frozen(prior):
        assert torch.equal(prior.log_weights(), learned_weights)
        assert torch.equal(prior.log_prob(z), learned_density)
    assert prior.logits.requires_grad  # and unfrozen afterwards


def test_fused_mixture_log_prob_matches_autograd_in_value_and_gradient():
    prior = mog(k=7, d=3)
    z = torch.randn(2, 50, 3, generator=rng(11), requires_grad=True)
    fused = prior.log_prob(z)
    mu, logvar, log_w = prior.components()
    reference = torch.logsumexp(log_w + diagonal_gaussian_log_prob(z.unsqueeze(-2), mu, logvar), dim=-1)
    assert torch.allclose(fused, reference, atol=1e-4)
    weights = torch.randn(2, 50, generator=rng(12))
    grads_fused = torch.autograd.grad((fused * weights).sum(), [z, prior.mu, prior.logvar, prior.logits])
    grads_reference = torch.autograd.grad((reference * weights).sum(), [z, prior.mu, prior.logvar, prior.logits])
    for a, b in zip(grads_fused, grads_reference, strict=True):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_fused_path_gives_the_same_kl_and_mode_usage_as_the_differentiable_one():
    prior = mog(k=6)
    mu, logvar = torch.randn(40, 2, generator=rng(13)), torch.randn(40, 2, generator=rng(14)) * 0.3
    kl_a, usage_a = prior.kl_and_mean_responsibilities(mu, logvar, rng(15), responsibility_gradient=True)
    kl_b, usage_b = prior.kl_and_mean_responsibilities(mu, logvar, rng(15), responsibility_gradient=False)
    assert torch.allclose(kl_a, kl_b, atol=1e-4)
    assert torch.allclose(usage_a, usage_b, atol=1e-5)
    assert usage_b.sum().item() == pytest.approx(1.0, abs=1e-5) and not usage_b.requires_grad
