"""Driver-side MLflow tracking: one parent run per sweep, one nested child run per trial.

Runs as a Ray Tune callback in the driver (MLflow calls made inside trainables would not reach these runs). Each
result goes out as one `log_batch` call (not one call per metric); only namespaced metrics (`train/…`, `val/…`,
`eval/…`) are logged, at the trial's own `step`, so no pid/timestamp/config noise reaches the UI.
"""
import json
import logging
import math
import platform
import subprocess
import time
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from ray.tune import Callback

from sweeps.cells import trial_cells
from sweeps.errors import TrackingError
from sweeps.results_table import cell_status

logger = logging.getLogger(__name__)

TRIAL_ID_TAG = "priorsweep.trial_id"
STATUS_TAG = "priorsweep.status"
METRIC_PREFIXES = ("train/", "val/", "eval/")


def check_tracking_uri(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast (one clear line) when an HTTP tracking server does not answer or a SQLite file can't be created."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as response:
                if response.status != 200:
                    raise TrackingError(f"MLflow tracking server at {uri} answered HTTP {response.status}")
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise TrackingError(f"cannot reach MLflow tracking server at {uri}: {reason}") from None
    elif uri.startswith("sqlite:///"):
        directory = Path(uri.removeprefix("sqlite:///")).expanduser().resolve().parent
        if not directory.is_dir():
            raise TrackingError(f"MLflow SQLite file's directory does not exist: {directory}")


def _package_versions() -> dict[str, str]:
    names = ["priorsweep", "ray", "optuna", "mlflow", "torch"]
    versions = {}
    for name in names:
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


def flatten_params(config: dict, prefix: str = "") -> dict[str, str]:
    """Nested config -> {'a.b': 'value'}; values as MLflow stores them (strings, at most 6000 chars)."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_params(value, name + "."))
        else:
            flat[name] = str(value)[:6000]
    return flat


def numeric_metrics(result: dict) -> dict[str, float]:
    return {
        key: float(value)
        for key, value in result.items()
        if key.startswith(METRIC_PREFIXES) and isinstance(value, (int, float)) and not isinstance(value, bool)
    }


class SweepTracker:
    """Owns the sweep's parent run: created once, found again on --resume, closed at the end."""

    def __init__(self, uri: str, experiment: str):
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        existing = self.client.get_experiment_by_name(experiment)
        self.experiment_id = existing.experiment_id if existing else self.client.create_experiment(experiment)
        self.parent_run_id: str | None = None

    def start_parent(self, sweep_name: str, tags: dict[str, str], params: dict, resume_run_id: str | None) -> str:
        if resume_run_id:
            self.parent_run_id = resume_run_id
            self.client.update_run(resume_run_id, status="RUNNING")
            return resume_run_id
        all_tags = {
            "priorsweep.sweep": sweep_name,
            "mlflow.source.git.commit": _git_commit(),
            "python": platform.python_version(),
            **{f"version.{k}": v for k, v in _package_versions().items()},
            **tags,
        }
        run = self.client.create_run(self.experiment_id, run_name=sweep_name, tags=all_tags)
        self.parent_run_id = run.info.run_id
        self.client.log_batch(self.parent_run_id, params=[Param(k, v) for k, v in flatten_params(params).items()])
        return self.parent_run_id

    def log_artifacts(self, directory: Path, patterns: tuple[str, ...]) -> None:
        for pattern in patterns:
            for path in sorted(directory.glob(pattern)):
                self.client.log_artifact(self.parent_run_id, str(path))

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.parent_run_id, status=status)

    def run_url(self, run_id: str) -> str:
        return f"#/experiments/{self.experiment_id}/runs/{run_id}"


class MlflowTrialCallback(Callback):
    """One nested child run per trial: params at start, metric curves per result, final status at the end."""

    def __init__(self, tracker: SweepTracker, trial_label, early_stopped=()):
        self.tracker = tracker
        self.client = tracker.client
        self.trial_label = trial_label  # config -> run name, e.g. "bias=2.5 beta=1 seed=0"
        self.early_stopped = early_stopped  # ids of trials a scheduler stopped early (status 'pruned')
        self.run_ids: dict[str, str] = {}

    def setup(self, **info):
        """On --resume, find the child runs that already exist so no trial gets a second one."""
        parent = self.tracker.parent_run_id
        for run in self.client.search_runs([self.tracker.experiment_id],
                                           filter_string=f"tags.mlflow.parentRunId = '{parent}'",
                                           max_results=50_000):
            trial_id = run.data.tags.get(TRIAL_ID_TAG)
            if trial_id:
                self.run_ids[trial_id] = run.info.run_id

    def child_run(self, cell_id: str, config: dict) -> str:
        if cell_id not in self.run_ids:
            run = self.client.create_run(
                self.tracker.experiment_id,
                run_name=self.trial_label(config),
                tags={"mlflow.parentRunId": self.tracker.parent_run_id, TRIAL_ID_TAG: cell_id, STATUS_TAG: "running"},
            )
            self.run_ids[cell_id] = run.info.run_id
            params = [Param(k, v) for k, v in flatten_params(config).items()]
            for start in range(0, len(params), 100):  # log_batch takes at most 100 params per call
                self.client.log_batch(run.info.run_id, params=params[start:start + 100])
        return self.run_ids[cell_id]

    def on_trial_start(self, iteration, trials, trial, **info):
        for cell_id, config, _ in trial_cells(trial.trial_id, trial.config, None):
            self.child_run(cell_id, config)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        timestamp = int(time.time() * 1000)
        for cell_id, config, metrics in trial_cells(trial.trial_id, trial.config, result):
            step = int(metrics.get("step", metrics.get("training_iteration", 0)))
            batch = [Metric(k, v, timestamp, step) for k, v in numeric_metrics(metrics).items() if not math.isinf(v)]
            if batch:
                self.client.log_batch(self.child_run(cell_id, config), metrics=batch)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._end(trial, errored=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._end(trial, errored=True)

    def _end(self, trial, errored: bool) -> None:
        for cell_id, config, metrics in trial_cells(trial.trial_id, trial.config, trial.last_result):
            run_id = self.child_run(cell_id, config)
            status = cell_status(trial, metrics, self.early_stopped, errored)
            self.client.log_batch(run_id, tags=[RunTag(STATUS_TAG, status)])
            self.client.set_terminated(run_id, status="FAILED" if errored else "FINISHED")


def write_sweep_record(path: Path, record: dict) -> None:
    path.write_text(json.dumps(record, indent=2, sort_keys=True))


def read_sweep_record(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}
