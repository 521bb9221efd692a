"""Optuna + ASHA on a real study: trials ASHA stops early reach Optuna as PRUNED, full runs as COMPLETE."""
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from sweeps.bias_grid import main as bias_grid_main

pytestmark = pytest.mark.integration


def test_early_stopped_trials_are_pruned_in_the_optuna_study(local_ray, tmp_path):
    code = bias_grid_main(["--preset", "smoke", "--search", "optuna", "--biases", "0", "--betas", "1", "--seeds",
                           "0", "--num-samples", "8", "--steps", "300", "--report-every", "50", "--name", "tpe",
                           "--max-concurrent-trials", "1", "--out", str(tmp_path), "--no-mlflow"])
    assert code == 0
    out = tmp_path / "bias_grid" / "tpe"
    table = pd.read_parquet(out / "results.parquet")
    study = optuna.load_study(study_name="tpe", storage=f"sqlite:///{out / 'optuna.db'}")
    assert len(study.trials) == len(table) == 8
    states = {state: sum(t.state == state for t in study.trials) for state in TrialState}
    assert states[TrialState.PRUNED] == (table["status"] == "pruned").sum() >= 1
    assert states[TrialState.COMPLETE] == (table["status"] == "completed").sum() >= 1
    for trial in study.trials:
        steps = sorted(trial.intermediate_values)
        if trial.state == TrialState.COMPLETE:
            assert steps == [1, 2, 3, 4, 5]  # 6 reports: the last one arrives as the trial's value
        else:
            assert steps[-1] in (1, 3)  # stopped at an ASHA rung (grace 1, reduction 3), before the budget of 6
    completed = table[table["status"] == "completed"]
    assert sorted(t.value for t in study.trials if t.state == TrialState.COMPLETE) == pytest.approx(
        sorted(completed["val/neg_elbo"]))
