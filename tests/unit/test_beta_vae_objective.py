"""The β-ELBO against a hand computation, and the prior's closed forms against torch.distributions."""
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from models.objectives import BetaElboConfig, beta_elbo
from models.priors import StandardNormalPrior
from models.vae import MlpVae, MlpVaeConfig


def linear_vae() -> MlpVae:
    """hidden_depth 0: encoder and decoder are single linear layers with weights set by hand."""
    model = MlpVae(MlpVaeConfig(data_dim=2, latent_dim=1, hidden_width=1, hidden_depth=0))
    with torch.no_grad():
        model.encoder.net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.5]]))  # mu = x1, logvar = x2/2
        model.encoder.net[0].bias.copy_(torch.tensor([0.0, -1.0]))
        model.decoder[0].weight.copy_(torch.tensor([[2.0], [-1.0]]))  # x_hat = (2z, -z + 0.5)
        model.decoder[0].bias.copy_(torch.tensor([0.0, 0.5]))
    return model


def test_beta_elbo_matches_a_hand_computation():
    x = torch.tensor([[0.4, 2.0], [-1.0, 0.0]])
    eps = torch.randn(2, 1, generator=torch.Generator().manual_seed(11))
    loss, parts = beta_elbo(linear_vae(), x, BetaElboConfig(beta=3.0, likelihood_variance=0.25),
                            torch.Generator().manual_seed(11))
    expected = 0.0
    for i, (x1, x2) in enumerate(x.tolist()):
        mu, logvar = x1, 0.5 * x2 - 1.0
        z = mu + math.exp(0.5 * logvar) * eps[i, 0].item()
        sse = (2 * z - x1) ** 2 + (-z + 0.5 - x2) ** 2
        kl = 0.5 * (mu**2 + math.exp(logvar) - 1 - logvar)
        expected += sse / (2 * 0.25) + 3.0 * kl
    assert loss.item() == pytest.approx(expected / 2, rel=1e-6)
    assert parts["loss"].item() == pytest.approx(parts["reconstruction"].item() + 3.0 * parts["kl"].item(), rel=1e-6)


def test_likelihood_variance_rescales_beta():
    """SSE/(2σ²): halving σ² doubles the reconstruction weight, i.e. loss(σ²=¼, β) = 2·loss(σ²=½, β/2)."""
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    quarter, _ = beta_elbo(linear_vae(), x, BetaElboConfig(2.0, 0.25), torch.Generator().manual_seed(1))
    half, _ = beta_elbo(linear_vae(), x, BetaElboConfig(1.0, 0.5), torch.Generator().manual_seed(1))
    assert quarter.item() == pytest.approx(2 * half.item(), rel=1e-6)


def test_standard_prior_closed_forms_match_torch_distributions():
    prior = StandardNormalPrior(4)
    mu, logvar = torch.randn(6, 4), torch.randn(6, 4)
    reference = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1)
    assert torch.allclose(prior.kl_from_posterior(mu, logvar), reference, atol=1e-5)
    z = prior.sample(100, torch.Generator().manual_seed(0))
    assert torch.allclose(prior.log_prob(z), Normal(0.0, 1.0).log_prob(z).sum(-1), atol=1e-5)
