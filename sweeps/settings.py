"""What one sweep is to run: where, with what resources, tracked where. Built from the command line by
sweeps/cli.py, checked and run by sweeps/runner.py (plain data, so the CLI imports it without importing Ray)."""
import os
from dataclasses import dataclass, field
from pathlib import Path

PROGRESS_EVERY_S = 60.0  # seconds between progress lines of running trials (sweeps/progress.py)


@dataclass
class SweepSettings:
    study: str
    name: str
    out_dir: Path  # results/<study>/<name>: results.parquet, figures, sweep.json
    storage: str  # Ray Tune storage root (shared storage on multi-node clusters); the sweep lives in storage/name
    address: str | None = None  # None: embedded local Ray (or RAY_ADDRESS); "auto": join the running cluster
    mlflow_uri: str | None = "sqlite:///mlflow.db"  # None: no MLflow
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    resume: bool = False
    max_failures: int = 2
    max_concurrent_trials: int | None = None
    log_checkpoints: bool = False  # each trial's last checkpoint as an artifact of the parent run
    progress_every_s: float = PROGRESS_EVERY_S  # seconds between progress lines of running trials
    tags: dict = field(default_factory=dict)  # extra parent-run tags (preset, search settings, …)
    # what the console and the report show, from the study's declaration (sweeps/study.py)
    headline: tuple[str, ...] = ()  # metrics of a finished cell's line
    progress_keys: tuple[str, ...] = ()  # metrics of a running trial's progress line
    report_columns: tuple[str, ...] = ()  # report.html's per-cell table (recorded in sweep.json)

    @property
    def experiment_path(self) -> str:
        return os.path.join(self.storage, self.name)
