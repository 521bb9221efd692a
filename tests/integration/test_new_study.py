"""A study declared here, in the test module alone, runs end to end through the real runner (Ray Tune, MLflow on
SQLite, the results table, progress lines, report): adding a study needs no edit of any generic module.

The toy: fit the mean of N(target, 1) samples by gradient steps; its one axis is the target, its headline metric
the final error. Its run object uses the shared trial loop (steps, Diverged, checkpoints) like the real studies.
"""
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from sweeps.study import Axis, Preset, Study
from sweeps.study_runner import main as run_study
from trainables.config import Field, positive, validate
from trainables.trial_loop import Checkpointed, interval_means, raise_if_diverged, report_until_done, timed_steps

pytestmark = pytest.mark.integration

FIELDS = {
    "target": Field(0.0, float, "the mean to recover"),
    "steps": Field(40, int, "gradient steps", positive, "> 0"),
    "report_every": Field(20, int, "steps per report", positive, "> 0"),
    "learning_rate": Field(0.1, float, "step size", positive, "> 0"),
    "seed": Field(0, int, "sample seed"),
}


def validate_config(config: dict) -> dict:
    return validate(config, FIELDS, "toy")


class MeanRun(Checkpointed):
    def __init__(self, config: dict):
        self.config, self.device, self.step = config, torch.device("cpu"), 0
        self.mean = torch.zeros((), requires_grad=True)
        self.generator = torch.Generator().manual_seed(config["seed"])

    def one_step(self) -> dict:
        x = torch.randn(64, generator=self.generator) + self.config["target"]  # (64,)
        loss = ((x - self.mean) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            self.mean -= self.config["learning_rate"] * self.mean.grad
            self.mean.grad = None
        return {"loss": loss.detach()}

    def train_interval(self, steps: int) -> dict:
        parts, _ = timed_steps(self.one_step, steps)
        raise_if_diverged(torch.isfinite(torch.stack([p["loss"] for p in parts])), self.step)
        self.step += steps
        return {f"train/{k}": float(v) for k, v in interval_means(parts).items()}

    def state_dict(self) -> dict:
        return {"mean": self.mean.detach().clone(), "step": self.step, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.mean = state["mean"].clone().requires_grad_(True)
        self.step, _ = state["step"], self.generator.set_state(state["generator"])


def train_toy(config: dict, sink=None) -> None:
    config = validate_config(config)
    run = MeanRun(config)
    report_until_done(run, config["steps"], config["report_every"], torch.device("cpu"),
                      lambda train, finished: {**train, "eval/error": abs(float(run.mean) - config["target"])},
                      sink=sink)


TOY = Study(
    name="toy_mean", description="Recover a mean.", cell_config=__name__, trainable=train_toy, trial_config=None,
    axes=(Axis("target", "--targets", float, "means to recover"),),
    presets={"tiny": Preset("three targets", axes={"target": (-1.0, 0.5, 2.0)}, trial={"steps": 40})},
    default_preset="tiny", label=lambda c: f"target={c['target']:g}", metric="eval/error", mode="min",
    headline=("eval/error",), progress=("train/loss",), report_columns=("target", "status", "eval/error"),
)


def test_a_study_declared_in_a_test_runs_end_to_end_through_the_real_runner(local_ray, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = run_study(TOY, ["--out", str(tmp_path / "results"), "--name", "toy", "--mlflow-uri", uri,
                           "--progress-every", "0", "--targets", "-1", "2", "--learning-rate", "0.2"])
    assert code == 0
    out = capsys.readouterr().out
    assert "target=2: completed — error" in out  # the toy's headline metric, named by its declaration only

    frame = pd.read_parquet(tmp_path / "results" / "toy_mean" / "toy" / "results.parquet")
    assert sorted(frame["target"]) == [-1.0, 2.0] and (frame["status"] == "completed").all()
    assert (frame["learning_rate"] == 0.2).all() and (frame["step"] == 40).all()
    assert (frame["eval/error"] < 0.3).all()  # 40 steps of 0.2 take the mean most of the way

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("toy_mean")
    runs = client.search_runs([experiment.experiment_id])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert sorted(r.data.tags["mlflow.runName"] for r in children) == ["target=-1", "target=2"]
    report = (tmp_path / "results" / "toy_mean" / "toy" / "report.html").read_text()
    assert "eval/error" in report and "target" in report
