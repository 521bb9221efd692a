"""The registry of study declarations: every study's presets validate and expand to the cells they promise, its
command line offers every trial setting of its FIELDS, and what it names by string exists."""
import itertools

import pytest

from sweeps.errors import SweepError
from sweeps.studies import all_studies
from sweeps.study import resolve
from sweeps.study_runner import build_parser, flag_of, prepare, trial_fields

STUDIES = all_studies()


def test_the_registry_holds_every_study_module():
    assert {"bias_grid", "introvae"} <= set(STUDIES)
    for name, study in STUDIES.items():
        assert study.name == name and study.default_preset in study.presets


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_every_preset_validates_and_expands_to_the_product_of_its_axes(name, tmp_path):
    study = STUDIES[name]
    for preset_name, preset in study.presets.items():
        sweep = prepare(study, ["--preset", preset_name, "--out", str(tmp_path), "--name", "x", "--no-mlflow",
                                *no_files_needed(study)])
        keys = [axis.key for axis in study.axes]
        combinations = itertools.product(*(preset.axes[key] for key in keys))
        expected = sum(not (study.redundant and study.redundant(dict(zip(keys, c, strict=True)), preset.axes))
                       for c in combinations)
        assert len(sweep.cells) == expected, preset_name
        # each cell holds one value of every axis, and every combination occurs once
        combinations = {tuple(cell[axis.key] for axis in study.axes) for cell in sweep.cells}
        assert len(combinations) == expected
        for cell in sweep.cells:
            assert {k: cell[k] for k in preset.trial} == preset.trial
            study.label(cell)  # every cell has a name
        # the trials cover every cell exactly once, and each validates as the trainable will check it
        validate_trial = resolve(study.trial_config or study.cell_config).validate_config
        configs = study.trial_configs(sweep.cells, sweep.axes, sweep.args)
        for config in configs:
            validate_trial(config)
        covered = sorted(tuple(sorted((k, v) for k, v in cell.items() if k in preset.axes))
                         for config in configs for _, cell, _ in _cells(config))
        assert covered == sorted(tuple(sorted((k, cell[k]) for k in preset.axes)) for cell in sweep.cells)


def no_files_needed(study) -> list[str]:
    """A study that reads data files checks them before it starts; here only the presets matter, so it may fetch."""
    return ["--download", "true"] if "download" in trial_fields(study) else []


def _cells(config):
    from sweeps.cells import trial_cells

    return trial_cells("t", config, None)


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_every_trial_setting_has_a_flag_that_reaches_the_config(name, tmp_path):
    study = STUDIES[name]
    parser = build_parser(study)
    flags = {option for action in parser._actions for option in action.option_strings}
    for key in trial_fields(study):
        assert flag_of(key) in flags, key
    for axis in study.axes:
        assert axis.flag in flags
    resolve(study.trainable), resolve(study.cell_config).FIELDS
    if study.draw:
        resolve(study.draw)
    for _, target in study.searches.values():
        resolve(target)


def test_a_flag_overrides_the_preset_and_an_old_flag_name_still_works(tmp_path):
    common = ["--preset", "smoke", "--out", str(tmp_path), "--name", "x", "--no-mlflow"]
    sweep = prepare(STUDIES["introvae"], [*common, "--iterations", "90", "--learnable-weights", "false"])
    assert {cell["steps"] for cell in sweep.cells} == {90}
    assert {cell["learnable_weights"] for cell in sweep.cells} == {False}


def test_a_value_listed_twice_is_refused(tmp_path):
    from sweeps.errors import SweepError

    with pytest.raises(SweepError, match="--betas lists a value twice"):
        prepare(STUDIES["bias_grid"], ["--preset", "smoke", "--betas", "1", "1", "--out", str(tmp_path)])


def test_population_trials_group_cells_as_the_population_size_asks(tmp_path):
    study = STUDIES["bias_grid"]
    common = ["--preset", "paper", "--out", str(tmp_path), "--name", "x", "--no-mlflow"]
    for size, trials in ((None, 11), (7, 33), (3, 11 * 3 * 3), (1, 231)):
        sweep = prepare(study, common + ([] if size is None else ["--population-size", str(size)]))
        configs = study.trial_configs(sweep.cells, sweep.axes, sweep.args)
        assert len(configs) == trials
        assert sum(len(c["betas"]) * len(c["seeds"]) for c in configs) == 231


def test_the_image_protocol_runs_each_learned_prior_setting_and_the_standard_prior_once_per_seed(tmp_path):
    study = STUDIES["introvae_images"]
    sweep = prepare(study, ["--preset", "mnist", "--out", str(tmp_path), "--name", "x", *no_files_needed(study)])
    standard = [c for c in sweep.cells if c["prior"] == "standard"]
    assert len(standard) == 3  # K and r_entropy mean nothing to N(0, I): one cell per seed, not 8
    assert len(sweep.cells) == 3 + 2 * (2 * 4 * 3)  # mog and vamp: K ∈ {10, 100} × r ∈ {0, 1, 10, 100} × 3 seeds


def test_2d_populations_group_cells_of_one_prior_and_split_back_into_the_same_cells():
    from argparse import Namespace

    from sweeps.cells import trial_cells
    from sweeps.studies.introvae_2d import population_trials

    axes = {"dataset": ("rings", "8gaussians"), "prior": ("standard", "mog"), "seed": (0, 1, 2)}
    cells = [{"dataset": d, "prior": p, "seed": s, "steps": 60} for d in axes["dataset"] for p in axes["prior"]
             for s in axes["seed"]]
    trials = population_trials(cells, axes, Namespace(population_size=4))
    assert [len(t.get("members", [t])) for t in trials] == [4, 2, 4, 2]  # per prior: 6 cells in 4 + 2
    assert [t["prior"] for t in trials] == ["standard", "standard", "mog", "mog"]  # one prior kind per trial
    back = [config for trial in trials for _, config, _ in trial_cells("t", trial, {})]
    key = lambda c: (c["dataset"], c["prior"], c["seed"])  # noqa: E731
    assert sorted(back, key=key) == sorted(cells, key=key)  # every cell once, with all its keys
    assert population_trials(cells, axes, Namespace(population_size=1)) == cells


def test_an_automatic_2d_population_is_one_per_prior_on_a_gpu_and_one_run_per_trial_on_a_cpu():
    """--population-size auto (the default): stacking pays on a GPU only (benchmarks/RESULTS.md)."""
    from argparse import Namespace

    from sweeps.studies.introvae_2d import population_trials

    axes = {"dataset": ("rings", "8gaussians"), "prior": ("standard", "mog"), "seed": (0, 1, 2)}
    cells = [{"dataset": d, "prior": p, "seed": s}
             for d in axes["dataset"] for p in axes["prior"] for s in axes["seed"]]
    on_cpu = Namespace(population_size="auto", gpus_per_trial=0.0, device="auto")
    assert population_trials(cells, axes, on_cpu) == cells
    for on_gpu in (Namespace(population_size="auto", gpus_per_trial=0.5, device="auto"),
                   Namespace(population_size="auto", gpus_per_trial=0.0, device="cuda")):  # --backend processes
        assert [len(t["members"]) for t in population_trials(cells, axes, on_gpu)] == [6, 6]
    for bad in ("0", "many"):
        with pytest.raises(SweepError, match="--population-size must be >= 1"):
            population_trials(cells, axes, Namespace(population_size=bad, gpus_per_trial=0.0))
