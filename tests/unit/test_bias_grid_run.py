"""The trial's core: checkpoints continue bit-identically; non-finite losses end the run as diverged."""
import pytest
import torch

from trainables.bias_grid import BiasGridRun
from trainables.trial_loop import Diverged

CONFIG = {"bias": 1.0, "beta": 0.5, "seed": 4, "hidden_width": 32, "batch_size": 16, "steps": 40}


def test_restored_run_continues_bit_identically(tmp_path):
    straight = BiasGridRun(CONFIG)
    first = straight.train_interval(20)
    second = straight.train_interval(20)

    interrupted = BiasGridRun(CONFIG)
    strip = lambda m: {k: v for k, v in m.items() if "per_second" not in k}  # noqa: E731
    assert strip(interrupted.train_interval(20)) == strip(first)
    interrupted.save(tmp_path)
    resumed = BiasGridRun(CONFIG)  # a fresh process would build exactly this, then restore
    resumed.restore(tmp_path)
    assert resumed.step == 20
    again = resumed.train_interval(20)

    assert strip(again) == strip(second)
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name


def test_non_finite_loss_raises_diverged_with_its_step():
    run = BiasGridRun({**CONFIG, "likelihood_variance": 1e-40})  # SSE / 2e-40 overflows float32 at once
    with pytest.raises(Diverged) as raised:
        run.train_interval(5)
    assert raised.value.step == 1
    assert run.step == 0


def test_evaluation_reports_every_metric_and_the_initial_baseline():
    run = BiasGridRun(CONFIG)
    baseline = run.measure_baseline()
    run.train_interval(10)
    metrics = run.evaluate()
    assert metrics["eval/pmi_baseline"] == baseline
    expected = {"eval/pmi", "eval/pmi_lstsq", "eval/decoder_mse", "eval/r2_true_to_learned",
                "eval/r2_learned_to_true", "eval/active_dims", "eval/mean_kl", "eval/pmi_baseline", "eval/collapsed"}
    assert {k for k in metrics if k.startswith("eval/")} == expected
    images = torch.tensor(metrics["plot/images"])  # (3 rows: test images, reconstructions, samples; 8; pixels)
    assert images.shape == (3, 8, 21 * 21)
    test_images = run.data.test_set.images
    first_and_last = torch.stack([test_images[0], test_images[-1]])
    assert torch.equal(images[0, [0, -1]], (first_and_last.clamp(0, 1) * 255).round().to(torch.uint8).long())
    validation = run.validation()
    assert validation == run.validation()  # a fixed held-out sample and noise: comparable across reports


def test_an_unreadable_checkpoint_is_one_warning_and_a_clean_start(tmp_path, capsys):
    from trainables.trial_loop import restore_or_start_over

    run = BiasGridRun(CONFIG)
    run.train_interval(10)
    run.save(tmp_path)
    assert restore_or_start_over(fresh := BiasGridRun(CONFIG), tmp_path) and fresh.step == 10  # intact: continues
    path = next(tmp_path.iterdir())
    path.write_bytes(path.read_bytes()[:100])  # cut short, as by a full disk
    again = BiasGridRun(CONFIG)
    assert not restore_or_start_over(again, tmp_path)
    assert again.step == 0 and capsys.readouterr().err.startswith("warning: unreadable checkpoint")
    untouched = BiasGridRun(CONFIG)  # nothing of the damaged file was applied: the run is as built
    for a, b in zip(again.model.parameters(), untouched.model.parameters(), strict=True):
        assert torch.equal(a, b)
