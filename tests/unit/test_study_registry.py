"""The registry of study declarations: every study's presets validate and expand to the cells they promise, its
command line offers every trial setting of its FIELDS, and what it names by string exists."""
import math

import pytest

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
        sweep = prepare(study, ["--preset", preset_name, "--out", str(tmp_path), "--name", "x", "--no-mlflow"])
        expected = math.prod(len(preset.axes[axis.key]) for axis in study.axes)
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
