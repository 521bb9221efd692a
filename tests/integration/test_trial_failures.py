"""A trial that crashes restarts from its last checkpoint under --max-failures and finishes as if nothing happened;
past the limit it ends `error`, the other trials finish, and the exit status says so. Through the real runner (Ray
Tune, MLflow on SQLite) with the toy study of test_new_study.py, whose trainable here raises on purpose."""
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from sweeps.study import Preset
from sweeps.study_runner import main as run_study
from tests.integration.test_new_study import FIELDS as TOY_FIELDS
from tests.integration.test_new_study import TOY, MeanRun
from trainables.config import Field, validate
from trainables.trial_loop import report_until_done

pytestmark = pytest.mark.integration
CRASHES_ONCE, CRASHES_ALWAYS, HEALTHY = 2.0, -1.0, 0.5  # targets: what each cell's trainable does
CRASH_AT_STEP = 30  # the interval after step 30 (whose checkpoint is the trial's last) crashes
FIELDS = {**TOY_FIELDS, "attempts_dir": Field("", str, "where each start of a trial is logged (one line each)")}


def validate_config(config: dict) -> dict:
    return validate(config, FIELDS, "toy_crash")


class CrashingRun(MeanRun):
    def __init__(self, config: dict, crash: bool):
        super().__init__(config)
        self.crash = crash

    def train_interval(self, steps: int) -> dict:
        if self.crash and self.step + steps > CRASH_AT_STEP:
            raise RuntimeError(f"injected crash at step {CRASH_AT_STEP}")
        return super().train_interval(steps)


def train_crashing(config: dict, sink=None) -> None:
    config = validate_config(config)
    log = Path(config["attempts_dir"]) / f"{config['target']:g}"
    with open(log, "a") as file:  # Ray's workers share this machine's disk with the test
        file.write("start\n")
    attempt = len(log.read_text().splitlines())
    crash = config["target"] == CRASHES_ALWAYS or (config["target"] == CRASHES_ONCE and attempt == 1)
    run = CrashingRun(config, crash)
    report_until_done(run, config["steps"], config["report_every"], torch.device("cpu"),
                      lambda train, finished: {**train, "eval/error": abs(float(run.mean) - config["target"])},
                      sink=sink)


CRASHING = replace(TOY, name="toy_crash", cell_config=__name__, trainable=train_crashing, presets={
    "three": Preset("one healthy, one crashing once, one always", axes={
        "target": (HEALTHY, CRASHES_ONCE, CRASHES_ALWAYS)}, trial={"steps": 40, "report_every": 10})},
    default_preset="three")


def test_a_crashed_trial_restarts_from_its_checkpoint_and_one_past_the_limit_ends_error(local_ray, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    attempts_dir = tmp_path / "attempts"
    attempts_dir.mkdir()
    code = run_study(CRASHING, ["--out", str(tmp_path / "results"), "--name", "crashy", "--mlflow-uri", uri,
                                "--max-failures", "1", "--max-concurrent-trials", "1", "--attempts-dir",
                                str(attempts_dir)])
    assert code == 1  # a trial ended in error: the exit status says so
    frame = pd.read_parquet(tmp_path / "results" / "toy_crash" / "crashy" / "results.parquet").set_index("target")
    assert frame.loc[HEALTHY, "status"] == "completed" and frame.loc[HEALTHY, "resumed_at_step"] == 0
    assert frame.loc[CRASHES_ONCE, "status"] == "completed" and frame.loc[CRASHES_ONCE, "step"] == 40
    assert frame.loc[CRASHES_ONCE, "resumed_at_step"] == 30  # continued from its last checkpoint, not from 0
    assert frame.loc[CRASHES_ALWAYS, "status"] == "error"
    attempts = {target: len((attempts_dir / f"{target:g}").read_text().splitlines())
                for target in (HEALTHY, CRASHES_ONCE, CRASHES_ALWAYS)}
    assert attempts == {HEALTHY: 1, CRASHES_ONCE: 2, CRASHES_ALWAYS: 2}  # --max-failures 1: one restart each

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("toy_crash")
    children = {r.data.tags["mlflow.runName"]: r for r in client.search_runs([experiment.experiment_id])
                if r.data.tags.get("mlflow.parentRunId")}
    assert sorted(children) == ["target=-1", "target=0.5", "target=2"]
    restarted = children["target=2"]
    history = [m.step for m in client.get_metric_history(restarted.info.run_id, "train/loss")]
    assert history == [10, 20, 30, 40]  # one history: steps before the crash once, the rest after the restart
    assert restarted.info.status == "FINISHED" and children["target=-1"].info.status == "FAILED"
