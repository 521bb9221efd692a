"""Objectives: functions `(model, batch, cfg) -> (loss, metrics)`, never buried in `forward` or a training loop."""
from dataclasses import dataclass

import torch

from models.vae import MlpVae, reparameterise


@dataclass(frozen=True)
class BetaElboConfig:
    """β-ELBO weights.

    beta: weight of KL(q(z|x) ‖ p(z)).
    likelihood_variance: σ² of the Gaussian likelihood p(x|z) = N(decoder(z), σ² I). The reconstruction term is
        SSE / (2σ²), so σ² rescales the effective β: plain SSE is σ² = ½, and on the bias-grid data that collapses
        the posterior for β ≥ 1. The default 0.25 is the generator's own noise variance, making β = 1 the true ELBO
        (up to the constant D/2·log 2πσ², which is omitted).
    """

    beta: float = 1.0
    likelihood_variance: float = 0.25


def beta_elbo(
    model: MlpVae, x: torch.Tensor, cfg: BetaElboConfig, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Negative β-ELBO per example, averaged over the batch; one reparameterised sample.

    x: (B, D). Returns the scalar loss and detached per-batch means of its parts (nats per example).
    """
    mu, logvar = model.encode(x)  # (B, d) each
    z = reparameterise(mu, logvar, generator)  # (B, d)
    x_hat = model.decode(z)  # (B, D)
    sse = (x_hat - x).pow(2).sum(dim=-1)  # (B,)
    reconstruction = sse / (2.0 * cfg.likelihood_variance)  # (B,)
    kl = model.prior.kl_from_posterior(mu, logvar)  # (B,)
    loss = (reconstruction + cfg.beta * kl).mean()
    metrics = {
        "loss": loss.detach(),
        "reconstruction": reconstruction.mean().detach(),
        "kl": kl.mean().detach(),
        "sse": sse.mean().detach(),
    }
    return loss, metrics
