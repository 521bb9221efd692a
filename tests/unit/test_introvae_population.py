"""The 2D Soft-IntroVAE population engine: each member trains as its lone IntroVaeRun would (per prior kind, through
the warm-up, the VampPrior's conversion, the freezing of the clipping bounds and the introspective stage), a
diverging member leaves the others untouched, checkpoints continue bit-identically, and a member's evaluation is its
lone run's.

Tolerance: a member matches its lone run to float rounding, not bit for bit: its products are batched (bmm over the
member dimension) where the lone run's are single matmuls, and the two kernels block and accumulate differently
(~1e-7 relative per product). Over 110 iterations Adam carries that into ~1e-5 absolute on the weights (largest on
the mixture logits, whose near-zero gradients Adam normalises) and ~1e-4 relative on the losses.
"""
import math

import pytest
import torch

from models.soft_intro_population import MemberNoise, ShapeRecorder
from tests.devices import DEVICES
from trainables.introvae import IntroVaeRun
from trainables.introvae_population import IntroVaePopulationRun, member_configs, train_introvae_2d, validate_config

# tiny: width 16, batch 32, K 4; num_vae 104 puts the VampPrior's conversion at iteration 4 (num_vae − 100) and the
# first introspective iteration (clipping bounds frozen) at 104
TINY = {"num_vae": 104, "steps": 110, "batch_size": 32, "hidden_width": 16, "num_components": 4, "lr_milestones": "",
        "learning_rate": 1e-3, "eval_points": 200, "gnelbo_grid": 16, "gnelbo_data_points": 64, "density_image": 8}
MEMBERS = {"members": [{"seed": 0, "beta_rec": 0.2, "beta_kl": 0.3, "beta_neg": 0.9},
                       {"seed": 1, "beta_rec": 0.5, "beta_kl": 0.1, "beta_neg": 0.6},
                       {"seed": 2, "beta_rec": 1.0, "beta_kl": 0.5, "beta_neg": 1.5}]}
PARAMETER_TOLERANCE = {"atol": 5e-5, "rtol": 1e-4}
LOSS_TOLERANCE = 2e-4  # relative


def per_iteration(run, iterations: int) -> list:
    return [run.train_interval(1) for _ in range(iterations)]


def without_rates(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if "per_second" not in k and not k.endswith("_seconds")}


def lone_runs(config: dict) -> list[IntroVaeRun]:
    return [IntroVaeRun(member) for member in member_configs(config)]


def assert_member_is_lone(population, p: int, lone: IntroVaeRun) -> None:
    member = population.member_run(p).model.state_dict()
    for (name, a), (_, b) in zip(member.items(), lone.model.state_dict().items(), strict=True):
        assert torch.allclose(a, b, **PARAMETER_TOLERANCE), (p, name, float((a - b).abs().max()))


def assert_same_losses(population_metrics: dict, lone_metrics: dict, where) -> None:
    lone_metrics = without_rates(lone_metrics)
    assert set(without_rates(population_metrics)) - {"train/model_iterations_per_second"} == set(lone_metrics)
    for key, value in lone_metrics.items():
        assert population_metrics[key] == pytest.approx(value, rel=LOSS_TOLERANCE, abs=1e-6), (where, key)


@pytest.mark.parametrize("setting", [
    {"prior": "standard"},
    {"prior": "mog", "r_entropy": 0.5, "members": [
        {**member, "dataset": dataset}
        for member, dataset in zip(MEMBERS["members"], ("8gaussians", "rings", "2spirals"), strict=True)]},
    {"prior": "mog", "r_entropy": 0.5, "prior_mode": "fixed"},
    {"prior": "vamp", "vamp_to_mog": True, "r_entropy": 0.5},
], ids=["standard", "mog", "mog-fixed", "vamp-to-mog"])
def test_every_member_trains_as_its_lone_run_through_both_stages(setting):
    config = {**TINY, **MEMBERS, **setting}
    population = IntroVaePopulationRun(config)
    stacked = per_iteration(population, 110)  # 104 warm-up, 6 introspective iterations
    assert population.model.prior.is_mixture == (setting["prior"] != "standard")
    if population.model.prior.is_mixture:
        assert population.model.prior.clip_low.shape == (3, 2)  # clipping on: per-member bounds were frozen
    for p, lone in enumerate(lone_runs(config)):
        for iteration, (members, alone) in enumerate(zip(stacked, per_iteration(lone, 110), strict=True)):
            assert_same_losses(members[p], alone, (p, iteration))
        assert_member_is_lone(population, p, lone)
    assert stacked[-1][0]["train/stage"] == 2.0


def test_members_with_different_seeds_and_betas_learn_different_models():
    """Guards the equivalence test against a trivial pass (every member the same model)."""
    population = IntroVaePopulationRun({**TINY, **MEMBERS, "prior": "mog", "num_vae": 5, "steps": 10})
    population.train_interval(10)
    weights = population.model.decoder.weights[0]  # (P, d, H)
    assert not torch.allclose(weights[0], weights[1]) and not torch.allclose(weights[1], weights[2])


def test_a_diverging_member_leaves_the_others_as_their_lone_runs():
    """Member 1's loss is infinite from its first iteration; it crosses into the introspective stage (NaN mixture
    weights: a sampling hazard) before the interval ends and it is dropped, then the others go on without it."""
    config = {**TINY, **MEMBERS, "prior": "mog", "r_entropy": 0.5, "num_vae": 10, "steps": 30}
    population = IntroVaePopulationRun(config)
    population.objective.beta_rec[1] = math.inf
    first = population.train_interval(20)
    assert population.diverged_at.tolist() == [-1, 1, -1]
    assert not math.isfinite(first[1]["train/encoder_loss"])
    second = population.train_interval(10)
    assert population.diverged_at.tolist() == [-1, 1, -1]
    assert all(torch.isfinite(v).all() for v in population.state_dict()["model"].values())
    assert all(not v[1].any() for v in population.model.state_dict().values() if v.numel())  # zeroed, still
    alone = lone_runs(config)
    for p in (0, 2):
        lone = alone[p]
        assert_same_losses(first[p], lone.train_interval(20), p)
        assert_same_losses(second[p], lone.train_interval(10), p)
        assert_member_is_lone(population, p, lone)


@pytest.mark.parametrize("interrupted_at", [60, 106], ids=["after conversion", "after clipping bounds"])
def test_restored_population_continues_bit_identically(interrupted_at, tmp_path):
    config = {**TINY, **MEMBERS, "prior": "vamp", "r_entropy": 0.5}
    straight = IntroVaePopulationRun(config)
    straight.train_interval(interrupted_at)
    expected = straight.train_interval(110 - interrupted_at)
    interrupted = IntroVaePopulationRun(config)
    interrupted.train_interval(interrupted_at)
    interrupted.save(tmp_path)
    resumed = IntroVaePopulationRun(config)
    resumed.restore(tmp_path)
    again = resumed.train_interval(110 - interrupted_at)
    assert [without_rates(m) for m in again] == [without_rates(m) for m in expected]
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name
    assert [without_rates(m) for m in resumed.evaluate_histograms()] == \
        [without_rates(m) for m in straight.evaluate_histograms()]


def test_a_members_evaluation_is_its_lone_runs():
    """Same keys as a lone run's final report, same values to float tolerance (the evaluation draws from the
    member's own generator, as the lone run's does)."""
    config = {**TINY, **MEMBERS, "prior": "mog", "r_entropy": 0.5, "num_vae": 10, "steps": 20}
    population = IntroVaePopulationRun(config)
    population.train_interval(20)
    reports = population.evaluate_final()
    for p, lone in enumerate(lone_runs(config)):
        lone.train_interval(20)
        full = lone.evaluate_final()
        assert set(reports[p]) == set(full)  # every key of a lone report, no other
        expected = without_rates(full)
        for key, value in expected.items():
            if isinstance(value, list):
                assert torch.allclose(torch.tensor(reports[p][key]), torch.tensor(value), rtol=1e-3, atol=1e-4), key
            else:
                assert reports[p][key] == pytest.approx(value, rel=1e-3, abs=1e-6), (p, key)


def test_members_set_their_own_keys_over_the_shared_ones_and_one_prior_kind_is_checked():
    configs = member_configs({"prior": "mog", "beta_kl": 0.3, "members": [{"seed": 4}, {"seed": 5, "beta_kl": 0.1}]})
    assert [(c["seed"], c["beta_kl"], c["prior"]) for c in configs] == [(4, 0.3, "mog"), (5, 0.1, "mog")]
    with pytest.raises(ValueError, match="non-empty list"):
        member_configs({"prior": "mog", "members": []})
    with pytest.raises(ValueError, match="one prior kind"):
        validate_config({"members": [{"prior": "mog"}, {"prior": "vamp"}]})
    with pytest.raises(ValueError, match="beta_kl"):
        validate_config({"members": [{"beta_kl": -1.0}]})  # every member checked as a lone run


@pytest.mark.parametrize("noise_streams", ["member", "population"])
@pytest.mark.parametrize("device", DEVICES)
def test_a_compiled_population_trains_as_the_eager_one_through_both_stages(one_thread, device, noise_streams):
    """compile_step (trainables/captured_step.py: inductor's kernels on the CPU, CUDA graphs on a GPU): the same
    losses as the eager population at every iteration, through the VampPrior's conversion (a recompile), the
    freezing of the clipping bounds and the introspective stage, and the same weights at the end, with either noise
    stream. The eager member-stream population is its members' lone runs (above), so this holds the compiled step to
    the lone runs too. Tolerance: inductor fuses and reorders float operations."""
    config = {**TINY, **MEMBERS, "prior": "vamp", "vamp_to_mog": True, "r_entropy": 0.5, "noise_streams": noise_streams}
    eager = IntroVaePopulationRun(config, device)
    compiled = IntroVaePopulationRun({**config, "compile_step": True}, device)
    for iterations in (1, 2, 101, 1, 5):  # each stage: one recorded eager iteration, then compiled ones
        for e, c in zip(eager.train_interval(iterations), compiled.train_interval(iterations), strict=True):
            assert_same_losses(c, e, iterations)
    assert set(compiled.noise_shapes) == {"warm-up", "introspective"}
    for (name, a), (_, b) in zip(compiled.model.state_dict().items(), eager.model.state_dict().items(), strict=True):
        assert torch.allclose(a, b, **PARAMETER_TOLERANCE), name


def test_noise_drawn_ahead_is_the_noise_drawn_as_the_objectives_go():
    """What lets the compiled losses be pure: the draws made ahead in the recorded shapes are the very numbers each
    member's generator gives when drawn during the iteration, and asking in another shape is an error."""
    def member_noise(seeds):
        return MemberNoise([torch.Generator().manual_seed(s) for s in seeds], torch.device("cpu"))

    shapes = [(32, 2), (100, 32, 2), (64, 2)]
    as_they_go, ahead = member_noise([3, 7]), member_noise([3, 7])
    recorder = ShapeRecorder(as_they_go)
    expected = [recorder.randn(shape) for shape in shapes]
    assert recorder.shapes == shapes
    predrawn = ahead.draw_ahead(recorder.shapes)
    for shape, draw in zip(shapes, expected, strict=True):
        assert draw.shape == (2, *shape) and torch.equal(predrawn.randn(shape), draw)
    with pytest.raises(RuntimeError, match="drawn ahead|pre-drawn"):
        ahead.draw_ahead([(32, 2)]).randn((16, 2))


def test_one_population_stream_gives_every_member_its_own_iid_batches_and_noise():
    """noise_streams population: one generator draws for every member at once, and each member still gets data of
    its own dataset and noise of its own; a sampler that orders its points (2spirals: one arm, then the other) is
    shuffled before the split, so no member trains on one arm."""
    config = {**TINY, "prior": "mog", "noise_streams": "population", "members": [
        {"seed": 0, "dataset": "2spirals"}, {"seed": 1, "dataset": "2spirals"}, {"seed": 2, "dataset": "8gaussians"}]}
    run = IntroVaePopulationRun(config)
    x = run._batches(512)  # (3, 512, 2)
    assert not torch.equal(x[0], x[1])
    assert x[0].mean(0).norm() < 0.4 and x[1].mean(0).norm() < 0.4  # one arm alone: ~0.75; both: ~0.07
    assert torch.allclose(x[2].norm(dim=-1), torch.full((512,), 2 / 1.414), atol=0.1)  # 8 centres, radius √2
    eps = run.noise.randn((1000, 2))  # (3, 1000, 2)
    assert not torch.equal(eps[0], eps[1]) and abs(float(eps.mean())) < 0.05 and abs(float(eps.std()) - 1) < 0.05


def test_a_population_stream_run_continues_bit_identically_after_a_restore(tmp_path):
    config = {**TINY, **MEMBERS, "prior": "mog", "r_entropy": 0.5, "num_vae": 10, "steps": 30,
              "noise_streams": "population"}
    straight = IntroVaePopulationRun(config)
    straight.train_interval(15)
    straight.save(tmp_path)
    expected = straight.train_interval(15)
    resumed = IntroVaePopulationRun(config)
    resumed.restore(tmp_path)
    assert [without_rates(m) for m in resumed.train_interval(15)] == [without_rates(m) for m in expected]


class KeepingSink:
    """Keeps every report; nothing to restore (a fresh trial)."""

    restored_report = None

    def __init__(self):
        self.reports = []

    def restore(self, run) -> bool:
        return False

    def report(self, metrics: dict, run, checkpoint: bool) -> None:
        self.reports.append(metrics)


def test_a_lone_cell_asking_for_population_settings_trains_as_a_population_of_one_and_reports_as_a_lone_run():
    """train_introvae_2d, the study's trainable: `noise_streams: population` (or `compile_step`) on a cell without
    members runs the population engine with one member, whose reports carry a lone run's keys at the top (where Tune,
    the searcher and the results table read them), not a `population` list."""
    cell = {**TINY, "prior": "mog", "num_vae": 10, "steps": 20, "report_every": 10}
    lone, population = KeepingSink(), KeepingSink()
    train_introvae_2d(cell, lone)
    train_introvae_2d({**cell, "noise_streams": "population"}, population)
    assert [r["step"] for r in population.reports] == [r["step"] for r in lone.reports] == [10, 20]
    for alone, member in zip(lone.reports, population.reports, strict=True):
        assert "population" not in member
        # every key of a lone report, plus the member's identity and divergence step
        assert set(member) - set(alone) == {"train/model_iterations_per_second", "seed", "dataset",
                                            "diverged_at_step"}
        assert set(alone) <= set(member) and member["status"] == alone["status"]
