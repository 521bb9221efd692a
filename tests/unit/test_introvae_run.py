"""The Soft-IntroVAE trial core: checkpoints continue bit-identically across the VampPrior's conversion and the
freezing of the clipping bounds; stages and divergence behave as specified."""
import pytest
import torch

from models.priors import MixtureOfGaussiansPrior, VampPrior
from trainables.config import ConfigError
from trainables.introvae import REFERENCE_BETAS, IntroVaeRun, validate_config
from trainables.trial_loop import Diverged

TINY = {"steps": 40, "num_vae": 110, "batch_size": 32, "hidden_width": 16, "num_components": 4,
        "gnelbo_grid": 16, "gnelbo_data_points": 64, "eval_points": 200, "density_image": 8}


def strip(metrics):
    return {k: v for k, v in metrics.items() if k != "train/iterations_per_second"}


@pytest.mark.parametrize("prior", ["mog", "vamp"])
def test_restored_run_continues_bit_identically_through_conversion_and_clipping(prior, tmp_path):
    config = {**TINY, "prior": prior, "steps": 140, "num_vae": 100}
    straight = IntroVaeRun(config)
    straight.train_interval(70)
    expected = straight.train_interval(70)  # crosses num_vae: clipping bounds frozen, stage 2 starts

    interrupted = IntroVaeRun(config)
    interrupted.train_interval(70)  # a VampPrior has been converted to a MoG at iteration 0 (num_vae − 100)
    interrupted.save(tmp_path)
    resumed = IntroVaeRun(config)
    resumed.restore(tmp_path)
    assert strip(resumed.train_interval(70)) == strip(expected)
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name
    assert isinstance(resumed.model.prior, MixtureOfGaussiansPrior)
    assert resumed.model.prior.clip_low.numel() == 2


def test_vamp_stays_a_vampprior_when_conversion_is_off():
    run = IntroVaeRun({**TINY, "prior": "vamp", "vamp_to_mog": False, "num_vae": 20})
    run.train_interval(30)
    assert isinstance(run.model.prior, VampPrior)


def test_reference_betas_fill_in_and_multiples_set_beta_neg():
    assert (validate_config({"dataset": "rings"})["beta_kl"], validate_config({"dataset": "rings"})["beta_rec"],
            validate_config({"dataset": "rings"})["beta_neg"]) == REFERENCE_BETAS["rings"]
    assert validate_config({"beta_kl": 0.4, "beta_neg_multiple": 3})["beta_neg"] == pytest.approx(1.2)
    with pytest.raises(ConfigError, match="sample_with_gradient"):
        validate_config({"prior": "standard", "sample_with_gradient": True})
    with pytest.raises(ConfigError, match="num_vae"):
        validate_config({"steps": 10, "num_vae": 20})


def test_non_finite_loss_raises_diverged():
    run = IntroVaeRun({**TINY, "learning_rate": 1e6, "num_vae": 5, "steps": 200})
    with pytest.raises(Diverged) as raised:
        run.train_interval(200)
    assert 1 <= raised.value.step <= 200


def test_fixed_prior_does_not_move_in_stage_two():
    run = IntroVaeRun({**TINY, "prior": "mog", "prior_mode": "fixed", "num_vae": 10, "steps": 30})
    run.train_interval(10)
    before = [p.detach().clone() for p in run.model.prior.parameters()]
    run.train_interval(20)
    assert all(torch.equal(a, b) for a, b in zip(before, run.model.prior.parameters(), strict=True))
