"""The Soft-IntroVAE objectives (models/objectives.py: warmup_loss, encoder_loss, decoder_loss) for P members at
once: the same terms, in the same order, over a leading member dimension.

Why not the lone functions themselves: they reduce over the batch with `.mean()` and concatenate along dim 0, so a
leading member dimension would mix members (and a member's gradient would be scaled by 1/P, which Adam's ε does not
forgive exactly). Here every batch reduction is over the last axis, batches are concatenated along dim 1, the βs are
per member (P,), and the returned loss is the *sum* of the members' losses, so each member's gradient is exactly its
own loss's. The losses (P,) come back as metrics, so a non-finite member can be found and dropped on its own.

Shapes: x (P, B, D); mu, logvar, z (P, B, d); per-example terms (P, B); per-member values (P,).
"""
import torch

from models.freeze import frozen
from models.objectives import SoftIntroConfig, normalised_neg_entropy, squared_differences
from models.soft_intro_population import MemberNoise, reparameterise


def squared_error(target: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """L_r per sample of each member's batch: (P, B, D) -> (P, B)."""
    return squared_differences(output, target).sum(dim=-1)


def _column(values: torch.Tensor) -> torch.Tensor:
    return values[:, None]  # (P,) -> (P, 1): one weight per member, broadcast over its batch


def warmup_loss(model, x: torch.Tensor, cfg: SoftIntroConfig, noise: MemberNoise):
    """Stage 1 per member: β_rec·L_r(x) + β_kl·KL(x), batch mean. Returns (Σ_p loss_p, metrics (P,))."""
    mu, logvar = model.encode(x)  # (P, B, d)
    reconstruction = squared_error(x, model.decode(reparameterise(mu, logvar, noise)))  # (P, B)
    kl = model.prior.kl_from_posterior(mu, logvar, noise)  # (P, B)
    loss = (_column(cfg.beta_rec) * reconstruction + _column(cfg.beta_kl) * kl).mean(dim=-1)  # (P,)
    return loss.sum(), {"loss": loss.detach(), "reconstruction": reconstruction.mean(-1).detach(),
                        "kl": kl.mean(-1).detach()}


def learns_prior(cfg: SoftIntroConfig, prior) -> bool:
    """Whether the prior steps with the decoder (the third player): a trainable mixture."""
    return cfg.prior_trainable and prior.is_mixture


def _negative_elbo_of_regenerations(model, inputs, beta_kl_term, noise: MemberNoise, prior_detached: bool):
    """β_rec·L_r(v, D(E(v))) and the KL term for inputs v (P, 2B, D): rec and fake stacked along the batch."""
    mu, logvar = model.encode(inputs)
    reconstruction = squared_error(inputs.detach(), model.decode(reparameterise(mu, logvar, noise)))  # (P, 2B)
    kl = model.prior.kl_from_posterior(mu, logvar, noise, detached=prior_detached)  # (P, 2B)
    return reconstruction, beta_kl_term * kl


def encoder_terms(model, x: torch.Tensor, prior_noise: tuple, cfg: SoftIntroConfig, noise: MemberNoise):
    """objectives.encoder_loss per member, the decoder and prior frozen by the caller (PopulationObjectives).
    Returns (Σ_p lossE_p, metrics (P,), state for the decoder step)."""
    prior = model.prior
    mu, logvar = model.encode(x)  # (P, B, d)
    z = reparameterise(mu, logvar, noise)
    rec = model.decode(z)  # (P, B, D)
    if prior.is_mixture:
        kl_real, mean_responsibility = prior.kl_and_mean_responsibilities(
            mu, logvar, noise, responsibility_gradient=cfg.r_entropy > 0)  # (P, B), (P, K)
        neg_entropy = normalised_neg_entropy(mean_responsibility)  # (P,)
    else:
        kl_real, mean_responsibility = prior.kl_from_posterior(mu, logvar), None
        neg_entropy = torch.zeros(len(x), device=x.device)
    reconstruction = squared_error(x, rec)  # (P, B)
    with torch.no_grad():
        fake = model.decode(prior.sample_from_noise(prior_noise))  # (P, B, D)
    batch = x.shape[1]
    regenerated = torch.cat([fake, rec.detach()], dim=1)  # (P, 2B, D)
    re_reconstruction, re_kl = _negative_elbo_of_regenerations(model, regenerated, _column(cfg.beta_neg), noise,
                                                               prior_detached=False)
    exponent = torch.exp(-cfg.alpha * cfg.scale * (_column(cfg.beta_rec) * re_reconstruction + re_kl))  # (P, 2B)
    real_term = cfg.scale * (cfg.beta_kl * kl_real.mean(-1) + cfg.beta_rec * reconstruction.mean(-1))  # (P,)
    fake_term = (1.0 / cfg.alpha) * 0.5 * (exponent[:, :batch].mean(-1) + exponent[:, batch:].mean(-1))
    loss = real_term + fake_term + cfg.scale * cfg.r_entropy * neg_entropy  # (P,)
    beta_neg = _column(cfg.beta_neg)
    metrics = {"encoder_loss": loss.detach(), "reconstruction": reconstruction.mean(-1).detach(),
               "kl_real": kl_real.mean(-1).detach(), "kl_fake": (re_kl[:, :batch] / beta_neg).mean(-1).detach(),
               "kl_rec": (re_kl[:, batch:] / beta_neg).mean(-1).detach(),
               "exp_elbo_fake": exponent[:, :batch].mean(-1).detach(),
               "exp_elbo_rec": exponent[:, batch:].mean(-1).detach(), "neg_entropy": neg_entropy.detach()}
    state = {"z": z.detach(), "mu": mu.detach(), "logvar": logvar.detach(), "responsibility": mean_responsibility}
    return loss.sum(), metrics, state


def decoder_terms(model, x: torch.Tensor, prior_noise: tuple, encoder_state: dict, cfg: SoftIntroConfig,
                  noise: MemberNoise):
    """objectives.decoder_loss per member (the prior steps with the decoder when trainable), the encoder (and a
    prior that does not learn) frozen by the caller (PopulationObjectives). (Σ_p, metrics (P,))."""
    prior = model.prior
    learn_prior = learns_prior(cfg, prior)
    rec = model.decode(encoder_state["z"])  # (P, B, D)
    reconstruction = squared_error(x, rec)  # (P, B)
    if learn_prior and cfg.sample_with_gradient:
        prior_z = prior.sample_from_noise(prior_noise)
    else:
        with torch.no_grad():
            prior_z = prior.sample_from_noise(prior_noise)
    fake = model.decode(prior_z)  # (P, B, D)
    batch = x.shape[1]
    re_reconstruction, re_kl = _negative_elbo_of_regenerations(model, torch.cat([rec, fake], dim=1), 1.0, noise,
                                                               prior_detached=True)  # (P, 2B) each
    loss = cfg.scale * (cfg.beta_rec * reconstruction.mean(-1)
                        + cfg.gamma * cfg.beta_kl * 0.5 * (re_kl[:, :batch].mean(-1) + re_kl[:, batch:].mean(-1))
                        + cfg.gamma * cfg.gamma_r * cfg.beta_rec * 0.5 * (
                            re_reconstruction[:, :batch].mean(-1) + re_reconstruction[:, batch:].mean(-1)))
    prior_kl = torch.zeros(len(x), device=x.device)
    if learn_prior:  # the prior as a third player, towards the (fixed) posteriors of real data
        prior_kl = prior.kl_from_posterior(encoder_state["mu"], encoder_state["logvar"], noise).mean(-1)
        loss = loss + cfg.scale * cfg.beta_kl * prior_kl
    metrics = {"decoder_loss": loss.detach(), "prior_kl": prior_kl.detach(),
               "kl_rec_decoder": re_kl[:, :batch].mean(-1).detach(),
               "kl_fake_decoder": re_kl[:, batch:].mean(-1).detach()}
    return loss.sum(), metrics


class PopulationObjectives:
    """The three losses as a population's step calls them, each player's frozen modules set around the terms.

    `wrap` turns each terms function into what runs: itself (eager), or a torch.compile'd copy
    (trainables/captured_step.py). Freezing flips `requires_grad`, which torch.compile cannot trace, so it stays
    out here and the compiled functions see one fixed freezing each; their noise must then be drawn ahead
    (models/soft_intro_population.PredrawnNoise): a draw from a torch.Generator would break the graph too.
    """

    def __init__(self, wrap=lambda function: function):
        self._warmup, self._encoder, self._decoder = wrap(warmup_loss), wrap(encoder_terms), wrap(decoder_terms)

    def warmup_loss(self, model, x: torch.Tensor, cfg: SoftIntroConfig, noise):
        return self._warmup(model, x, cfg, noise)

    def encoder_loss(self, model, x: torch.Tensor, prior_noise: tuple, cfg: SoftIntroConfig, noise):
        with frozen(model.decoder, model.prior):
            return self._encoder(model, x, prior_noise, cfg, noise)

    def decoder_loss(self, model, x: torch.Tensor, prior_noise: tuple, encoder_state: dict, cfg: SoftIntroConfig,
                     noise):
        with frozen(model.encoder, None if learns_prior(cfg, model.prior) else model.prior):
            return self._decoder(model, x, prior_noise, encoder_state, cfg, noise)
