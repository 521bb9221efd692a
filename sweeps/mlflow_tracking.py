"""Driver-side tracking: one parent run per sweep, one nested child run per cell, a journal of it all on disk.

`TrialTrackingCallback` runs in the driver (MLflow calls made inside trainables would not reach these runs). For
every trial event it appends a line to the sweep's journal (`tracking.jsonl`, analysis/journal.py) and queues the
same write for the `MlflowWriter` process, so a result costs the sweep a file append and a queue put, never a
round trip to the server; the journal is what `python -m analysis sync` replays when the server was down. Only
namespaced numbers (`train/…`, `val/…`, `eval/…`) become metrics, at the trial's own `step`; no pid, timestamp or
config noise. At a trial's end each cell gets its figure (reconstructions and samples, or the 2D density) as an
artifact, and with `--log-checkpoints` its last checkpoint.
"""
import math
import platform
import subprocess
import time
from functools import partial
from importlib import metadata
from pathlib import Path

from mlflow.tracking import MlflowClient
from ray.tune import Callback

from analysis.journal import JOURNAL_FILE, JournalWriter
from analysis.mlflow_runs import (
    child_runs,
    create_parent,
    experiment_id,
    flatten_params,
    run_url,
    tracking_problem,
    ui_base_url,
)
from analysis.trial_figures import TRIAL_FIGURE_DIR, has_trial_figure, trial_figure
from sweeps.cells import node_tags, trial_cells
from sweeps.errors import TrackingError
from sweeps.mlflow_writer import MlflowTarget, MlflowWriter
from sweeps.results_table import cell_status

METRIC_PREFIXES = ("train/", "val/", "eval/")


def check_tracking_uri(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast (one clear line) when the tracking server or database does not answer."""
    problem = tracking_problem(uri, timeout_s)
    if problem:
        raise TrackingError(problem)


def _package_versions() -> dict[str, str]:
    versions = {}
    for name in ("priorsweep", "ray", "optuna", "mlflow", "torch"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def parent_tags(sweep_name: str, extra: dict[str, str]) -> dict[str, str]:
    """What the parent run is tagged with: study, sweep, preset and search (extra), commit, versions."""
    return {
        "priorsweep.sweep": sweep_name,
        "mlflow.source.git.commit": _git_commit(),
        "python": platform.python_version(),
        **{f"version.{k}": v for k, v in _package_versions().items()},
        **extra,
    }


def numeric_metrics(result: dict) -> dict[str, float]:
    """The result's namespaced, finite numbers (MLflow metrics); NaN/inf are left out here and in the journal."""
    return {
        key: float(value)
        for key, value in result.items()
        if key.startswith(METRIC_PREFIXES) and isinstance(value, (int, float)) and not isinstance(value, bool)
        and math.isfinite(value)
    }


class SweepTracker:
    """Owns the sweep's parent run: created once, found again on --resume, closed at the end."""

    def __init__(self, uri: str, experiment: str):
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        self.experiment_id = experiment_id(self.client, experiment)
        self.parent_run_id: str | None = None

    def start_parent(self, sweep_name: str, tags: dict[str, str], params: dict, resume_run_id: str | None) -> str:
        if resume_run_id:
            self.parent_run_id = resume_run_id
            self.client.update_run(resume_run_id, status="RUNNING")
        else:
            self.parent_run_id = create_parent(self.client, self.experiment_id, sweep_name, tags, params)
        return self.parent_run_id

    def existing_children(self) -> dict[str, str]:
        return child_runs(self.client, self.experiment_id, self.parent_run_id)

    def target(self) -> MlflowTarget:
        return MlflowTarget(self.uri, self.experiment_id, self.parent_run_id)

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.parent_run_id, status=status)

    def parent_url(self) -> str:
        return run_url(ui_base_url(self.uri), self.experiment_id, self.parent_run_id)


class TrialTrackingCallback(Callback):
    """Journal + MLflow child runs per cell: params at start, metric curves per result, status and figure at the end.

    `writer.target` None (`--no-mlflow`): the journal and the figures are still written, so `sync` can fill an
    MLflow server later.
    """

    def __init__(self, results_dir: Path, writer: MlflowWriter, trial_label, early_stopped=(),
                 log_checkpoints: bool = False, full_config=None):
        self.results_dir = results_dir
        self.journal = JournalWriter(results_dir / JOURNAL_FILE)
        self.writer = writer
        self.trial_label = trial_label  # config -> run name, e.g. "bias=2.5 beta=1 seed=0"
        self.early_stopped = early_stopped  # ids of trials a scheduler stopped early (status 'pruned')
        self.log_checkpoints = log_checkpoints
        self.full_config = full_config or dict  # cell config -> every key with its default (the run's params)
        self.started: set[str] = set(writer.run_ids)  # on --resume, cells that already have a run

    def _start(self, cell: str, config: dict) -> None:
        if cell not in self.started:
            self.started.add(cell)
            name, params = self.trial_label(config), flatten_params(self.full_config(config))
            self.journal.start(cell, name, params)
            self.writer.start_cell(cell, name, params)

    def on_trial_start(self, iteration, trials, trial, **info):
        for cell, config, _ in trial_cells(trial.trial_id, trial.config, None):
            self._start(cell, config)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        timestamp = int(time.time() * 1000)
        for cell, config, metrics in trial_cells(trial.trial_id, trial.config, result):
            self._start(cell, config)
            step = int(metrics.get("step", metrics.get("training_iteration", 0)))
            values = numeric_metrics(metrics)
            if values:
                self.journal.metrics(cell, step, timestamp, values)
                self.writer.log_metrics(cell, step, timestamp, values)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._end(trial, errored=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._end(trial, errored=True)

    def _end(self, trial, errored: bool) -> None:
        for cell, config, metrics in trial_cells(trial.trial_id, trial.config, trial.last_result):
            self._start(cell, config)
            status, run_status = cell_status(trial, metrics, self.early_stopped, errored), \
                "FAILED" if errored else "FINISHED"
            tags = node_tags(metrics)
            self.journal.end(cell, status, run_status, tags)
            self.writer.end_cell(cell, status, run_status, tags)
            if has_trial_figure(metrics):
                self.log_artifact(cell, Path(TRIAL_FIGURE_DIR) / f"{cell}.png", None,
                                  draw=partial(trial_figure, {**config, **metrics}))
        if self.log_checkpoints and trial.checkpoint is not None:
            self._log_checkpoint(trial)

    def log_artifact(self, cell: str | None, relative: Path, folder: str | None, draw=None) -> None:
        """Journal and upload a file (or folder) of the results directory; `draw(path)` (picklable: it runs in the
        writer process) creates it first."""
        local = self.results_dir / relative
        self.journal.artifact(cell, str(relative), folder)
        self.writer.log_artifact(cell, local, folder, None if draw is None else partial(draw, local))

    def _log_checkpoint(self, trial) -> None:
        """The trial's last checkpoint on the parent run under checkpoints/<trial id> (a population's is shared
        by its cells, so it is stored once)."""
        checkpoint = Path(trial.checkpoint.path)
        if not checkpoint.is_dir():  # remote storage (s3://…): the checkpoint stays there
            return
        try:
            relative = checkpoint.resolve().relative_to(self.results_dir.resolve())
        except ValueError:
            relative = checkpoint.resolve()  # journal keeps the absolute path; `sync` reads it as is
        self.log_artifact(None, relative, f"checkpoints/{trial.trial_id}")

    def close(self) -> None:
        self.journal.close()

    def __getstate__(self) -> dict:
        """Ray pickles the run config, callbacks included, into tuner.pkl; an open file and a process handle cannot go.
        Nothing is lost: `run_sweep` gives a restored Tuner fresh callbacks."""
        return {k: v for k, v in self.__dict__.items() if k not in ("journal", "writer")}
