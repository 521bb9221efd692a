"""Objectives: functions `(model, batch, cfg) -> (loss, metrics)`, never buried in `forward` or a training loop."""
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from models.freeze import frozen
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
    sse = squared_differences(x_hat, x).sum(dim=-1)  # (B,)
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


# ---- Soft-IntroVAE with a (possibly learned) prior: spec introvae.md, "Training" ----------------------------------


@dataclass(frozen=True)
class SoftIntroConfig:
    """Weights of the Soft-IntroVAE objectives.

    scale: s, 1/(data dimension) for images but 0.5 in 2D. alpha: the exponent's factor (2).
    gamma, gamma_r: weights of the decoder's KL terms on rec/fake and of its reconstruction-of-reconstruction
    terms (1 and 1e-8). r_entropy: weight of the responsibility regulariser (encoder only).
    prior_trainable: the prior steps with the decoder in the introspective phase ("fixed prior" runs: False).
    sample_with_gradient: fake = D(μ_k + σ_k ε) carries gradient into the prior's parameters.
    A population (models/soft_intro_population_objectives.py) gives the three βs as (P,) tensors, one per member.
    """

    beta_rec: float | torch.Tensor = 1.0
    beta_kl: float | torch.Tensor = 1.0
    beta_neg: float | torch.Tensor = 1.0
    scale: float = 0.5
    alpha: float = 2.0
    gamma: float = 1.0
    gamma_r: float = 1e-8
    r_entropy: float = 0.0
    prior_trainable: bool = True
    sample_with_gradient: bool = False


def squared_differences(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(output − target)² elementwise, target broadcast to output's shape. mse_loss does it in one pass forward and
    one backward (sub, pow and pow's two-multiply backward take ~1.8× as long on a population's (P, B, D))."""
    return F.mse_loss(output, target.expand_as(output), reduction="none")


def squared_error(target: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """L_r: per-sample sum of squared errors, (B, ...) -> (B,)."""
    return squared_differences(output, target).flatten(1).sum(dim=1)


def normalised_neg_entropy(mean_responsibility: torch.Tensor) -> torch.Tensor:
    """Σ_k r̄_k log(r̄_k + 1e-8), divided by log K when K ≥ 3: −1 for uniform use of the modes, 0 for one mode."""
    num_components = mean_responsibility.shape[-1]
    value = (mean_responsibility * torch.log(mean_responsibility + 1e-8)).sum(dim=-1)
    return value / math.log(num_components) if num_components >= 3 else value


def warmup_loss(model, x: torch.Tensor, cfg: SoftIntroConfig, generator=None):
    """Stage 1: β_rec·L_r(x) + β_kl·KL(x), batch mean (no s factor); encoder, decoder and prior all learn."""
    mu, logvar = model.encode(x)
    reconstruction = squared_error(x, model.decode(reparameterise(mu, logvar, generator)))  # (B,)
    kl = model.prior.kl_from_posterior(mu, logvar, generator)  # (B,)
    loss = (cfg.beta_rec * reconstruction + cfg.beta_kl * kl).mean()
    return loss, {"loss": loss.detach(), "reconstruction": reconstruction.mean().detach(), "kl": kl.mean().detach()}


def _negative_elbo_of_regenerations(model, inputs, cfg: SoftIntroConfig, beta_kl_term: float, generator,
                                    prior_detached: bool):
    """β_rec·L_r(v, D(E(v))) and the KL term of E(v) for inputs v (2B: rec and fake stacked, one pass)."""
    mu, logvar = model.encode(inputs)
    reconstruction = squared_error(inputs.detach(), model.decode(reparameterise(mu, logvar, generator)))
    kl = model.prior.kl_from_posterior(mu, logvar, generator, detached=prior_detached)
    return reconstruction, beta_kl_term * kl


def encoder_loss(model, x: torch.Tensor, prior_noise: tuple, cfg: SoftIntroConfig, generator=None):
    """The encoder's step (decoder and prior frozen). Returns (loss, metrics, state for the decoder step).

    lossE = s·(β_kl·KL(x) + β_rec·L_r(x)) + (1/α)·½·(mean exp(−α·s·ELBO_neg(fake)) + mean exp(−α·s·ELBO_neg(rec)))
            + s·r_entropy·NegEntropy, with fake = D(z ~ p) and rec = D(z ~ q(z|x)) detached as inputs.
    """
    prior = model.prior
    with frozen(model.decoder, prior):
        mu, logvar = model.encode(x)  # (B, d)
        z = reparameterise(mu, logvar, generator)
        rec = model.decode(z)  # (B, D): gradient reaches the encoder through the frozen decoder
        if prior.is_mixture:
            kl_real, mean_responsibility = prior.kl_and_mean_responsibilities(
                mu, logvar, generator, responsibility_gradient=cfg.r_entropy > 0)
            neg_entropy = normalised_neg_entropy(mean_responsibility)
        else:
            kl_real, mean_responsibility = prior.kl_from_posterior(mu, logvar), None
            neg_entropy = torch.zeros((), device=x.device)
        reconstruction = squared_error(x, rec)  # (B,)
        with torch.no_grad():
            fake = model.decode(prior.sample_from_noise(prior_noise))  # (B, D)
        batch = len(x)
        regenerated = torch.cat([fake, rec.detach()])  # (2B, D)
        re_reconstruction, re_kl = _negative_elbo_of_regenerations(model, regenerated, cfg, cfg.beta_neg, generator,
                                                                   prior_detached=False)
        exponent = torch.exp(-cfg.alpha * cfg.scale * (cfg.beta_rec * re_reconstruction + re_kl))  # (2B,)
        real_term = cfg.scale * (cfg.beta_kl * kl_real.mean() + cfg.beta_rec * reconstruction.mean())
        fake_term = (1.0 / cfg.alpha) * 0.5 * (exponent[:batch].mean() + exponent[batch:].mean())
        loss = real_term + fake_term + cfg.scale * cfg.r_entropy * neg_entropy
    metrics = {"encoder_loss": loss.detach(), "reconstruction": reconstruction.mean().detach(),
               "kl_real": kl_real.mean().detach(), "kl_fake": (re_kl[:batch] / cfg.beta_neg).mean().detach(),
               "kl_rec": (re_kl[batch:] / cfg.beta_neg).mean().detach(),
               "exp_elbo_fake": exponent[:batch].mean().detach(), "exp_elbo_rec": exponent[batch:].mean().detach(),
               "neg_entropy": neg_entropy.detach()}
    state = {"z": z.detach(), "mu": mu.detach(), "logvar": logvar.detach(), "responsibility": mean_responsibility}
    return loss, metrics, state


def decoder_loss(model, x: torch.Tensor, prior_noise: tuple, encoder_state: dict, cfg: SoftIntroConfig,
                 generator=None):
    """The decoder's (and, when trainable, the prior's) step; the encoder is frozen but passes gradient through.

    lossD = s·(β_rec·L_r(x) + β_kl·KL(q(z|x).detach() ‖ p_ψ)
               + γ·β_kl·½·(KL(rec ‖ p_ψ.detach()) + KL(fake ‖ p_ψ.detach()))
               + γ·γ_r·β_rec·½·(L_r(rec, D(E(rec))) + L_r(fake, D(E(fake)))))
    """
    prior = model.prior
    learn_prior = cfg.prior_trainable and prior.is_mixture
    with frozen(model.encoder, None if learn_prior else prior):
        rec = model.decode(encoder_state["z"])  # (B, D)
        reconstruction = squared_error(x, rec)
        if learn_prior and cfg.sample_with_gradient:
            prior_z = prior.sample_from_noise(prior_noise)  # gradient reaches μ_k, σ_k through the fake
        else:
            with torch.no_grad():
                prior_z = prior.sample_from_noise(prior_noise)
        fake = model.decode(prior_z)  # (B, D)
        batch = len(x)
        re_reconstruction, re_kl = _negative_elbo_of_regenerations(model, torch.cat([rec, fake]), cfg, 1.0,
                                                                   generator, prior_detached=True)
        loss = cfg.scale * (cfg.beta_rec * reconstruction.mean()
                            + cfg.gamma * cfg.beta_kl * 0.5 * (re_kl[:batch].mean() + re_kl[batch:].mean())
                            + cfg.gamma * cfg.gamma_r * cfg.beta_rec * 0.5 * (re_reconstruction[:batch].mean()
                                                                              + re_reconstruction[batch:].mean()))
        prior_kl = torch.zeros((), device=x.device)
        if learn_prior:  # the prior as a third player: it moves towards the (fixed) posteriors of real data
            prior_kl = prior.kl_from_posterior(encoder_state["mu"], encoder_state["logvar"], generator).mean()
            loss = loss + cfg.scale * cfg.beta_kl * prior_kl
    metrics = {"decoder_loss": loss.detach(), "prior_kl": prior_kl.detach(),
               "kl_rec_decoder": re_kl[:batch].mean().detach(), "kl_fake_decoder": re_kl[batch:].mean().detach()}
    return loss, metrics


# ---- a population of β-VAEs (models/population.py) ---------------------------------------------------------------


def population_beta_elbo(model, x: torch.Tensor, beta: torch.Tensor, likelihood_variance: torch.Tensor,
                         eps: torch.Tensor, alive: torch.Tensor | None = None):
    """beta_elbo for every member at once. x: (B, D) shared, or (G, B, D), batch g for the g-th of G equal groups
    of consecutive members (one group per seed); beta, likelihood_variance, alive: (P,); eps: (P or 1, B, d)
    reparameterisation noise (1: members share it, as lone models with one seed would).

    Returns the sum of the members' batch-mean losses (each member's gradient is its own loss's) and per-member
    metrics (P,). Members not `alive` (diverged) contribute nothing, so their NaNs stay theirs.
    """
    mu, logvar = model.encode(x)  # (P, B, d)
    z = mu + torch.exp(0.5 * logvar) * eps
    x_hat = model.decode(z)  # (P, B, D)
    if x.dim() == 3:  # member p of P reads batch p // (P/G)
        sse = squared_differences(x_hat.unflatten(0, (x.shape[0], -1)), x[:, None]).sum(dim=-1).flatten(0, 1)  # (P, B)
    else:
        sse = squared_differences(x_hat, x).sum(dim=-1)  # (P, B)
    reconstruction = sse / (2.0 * likelihood_variance[:, None])
    kl = model.prior.kl_from_posterior(mu, logvar)  # (P, B)
    member_loss = (reconstruction + beta[:, None] * kl).mean(dim=-1)  # (P,)
    if alive is not None:
        member_loss = torch.where(alive, member_loss, torch.zeros_like(member_loss))
    metrics = {"loss": member_loss.detach(), "reconstruction": reconstruction.mean(-1).detach(),
               "kl": kl.mean(-1).detach(), "sse": sse.mean(-1).detach()}
    return member_loss.sum(), metrics
