"""Soft-IntroVAE objectives: gradient routing between the three players (spec: introvae.md, "Training")."""
import torch

from models.objectives import SoftIntroConfig, decoder_loss, encoder_loss, warmup_loss
from models.priors import MixtureOfGaussiansPrior
from models.vae import MlpVae, MlpVaeConfig


def model_with_mog():
    torch.manual_seed(0)
    model = MlpVae(MlpVaeConfig(data_dim=2, latent_dim=2, hidden_width=16, hidden_depth=2))
    model.prior = MixtureOfGaussiansPrior(4, 2, learnable_weights=True, generator=torch.Generator().manual_seed(1))
    return model


def grads(module):
    return [p.grad for p in module.parameters()]


def run_encoder_step(model, cfg):
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(2))
    generator = torch.Generator().manual_seed(3)
    noise = model.prior.sample_noise(32, generator)
    loss, metrics, state = encoder_loss(model, x, noise, cfg, generator)
    return x, noise, loss, metrics, state, generator


def test_encoder_step_trains_only_the_encoder():
    model = model_with_mog()
    *_, loss, _, _, _ = run_encoder_step(model, SoftIntroConfig(r_entropy=1.0))
    loss.backward()
    assert all(g is not None and g.abs().sum() > 0 for g in grads(model.encoder))
    assert all(g is None for g in grads(model.decoder))
    assert all(g is None for g in grads(model.prior))
    assert all(p.requires_grad for p in model.parameters())  # flags restored after the step


def test_decoder_step_trains_decoder_and_trainable_prior_but_not_the_encoder():
    model = model_with_mog()
    x, noise, loss_e, _, state, generator = run_encoder_step(model, SoftIntroConfig())
    loss, _ = decoder_loss(model, x, noise, state, SoftIntroConfig(prior_trainable=True), generator)
    loss.backward()
    assert all(g is None for g in grads(model.encoder))
    assert all(g is not None and g.abs().sum() > 0 for g in grads(model.decoder))
    assert all(g is not None and g.abs().sum() > 0 for g in grads(model.prior))


def test_fixed_prior_gets_no_gradient_in_the_decoder_step():
    model = model_with_mog()
    x, noise, _, _, state, generator = run_encoder_step(model, SoftIntroConfig())
    loss, metrics = decoder_loss(model, x, noise, state, SoftIntroConfig(prior_trainable=False), generator)
    loss.backward()
    assert all(g is None for g in grads(model.prior))
    assert metrics["prior_kl"].item() == 0.0


def test_sampling_with_gradient_reaches_the_prior_through_the_fakes():
    def prior_mu_grad(sample_with_gradient):
        model = model_with_mog()
        x, noise, _, _, state, generator = run_encoder_step(model, SoftIntroConfig())
        cfg = SoftIntroConfig(prior_trainable=True, sample_with_gradient=sample_with_gradient)
        loss, _ = decoder_loss(model, x, noise, state, cfg, generator)
        loss.backward()
        return model.prior.mu.grad.clone()

    assert not torch.allclose(prior_mu_grad(True), prior_mu_grad(False))


def test_encoder_loss_matches_its_formula_for_known_parts():
    """With β_neg huge, the exp terms vanish: lossE = s·(β_kl·KL + β_rec·L_r) + s·r_entropy·NegEntropy."""
    model = model_with_mog()
    cfg = SoftIntroConfig(beta_rec=0.7, beta_kl=0.3, beta_neg=1e6, scale=0.5, r_entropy=2.0)
    *_, loss, metrics, _, _ = run_encoder_step(model, cfg)
    expected = 0.5 * (0.3 * metrics["kl_real"] + 0.7 * metrics["reconstruction"]) + 0.5 * 2.0 * metrics["neg_entropy"]
    assert metrics["exp_elbo_fake"].item() < 1e-30
    assert torch.allclose(loss, expected, rtol=1e-5)


def test_warmup_trains_every_player():
    model = model_with_mog()
    loss, _ = warmup_loss(model, torch.randn(16, 2), SoftIntroConfig(), torch.Generator().manual_seed(0))
    loss.backward()
    for module in (model.encoder, model.decoder, model.prior):
        assert all(g is not None for g in grads(module))
