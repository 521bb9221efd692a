"""A sweep's parent run in MLflow: created once, found again on --resume, closed at the end; and what it is tagged
with (study, sweep, preset and search, commit, versions). Its children, one per cell, are the writer's
(tracking/writer.py)."""
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from mlflow.tracking import MlflowClient

from tracking.run_layout import child_runs, create_parent, experiment_id, run_url, ui_base_url
from tracking.writer_engine import MlflowTarget


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


class ParentRun:
    """The sweep's parent run in the experiment named after its study."""

    def __init__(self, uri: str, experiment: str):
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        self.experiment_id = experiment_id(self.client, experiment)
        self.run_id: str | None = None

    def start(self, sweep_name: str, tags: dict[str, str], params: dict, resume_run_id: str | None) -> str:
        """Create the run, or (on --resume) mark the recorded one RUNNING again; returns its id."""
        if resume_run_id:
            self.run_id = resume_run_id
            self.client.update_run(resume_run_id, status="RUNNING")
        else:
            self.run_id = create_parent(self.client, self.experiment_id, sweep_name, tags, params)
        return self.run_id

    def children(self) -> dict[str, str]:
        """cell id -> run id of the child runs it has already (those of the sweep that --resume continues)."""
        return child_runs(self.client, self.experiment_id, self.run_id)

    def target(self) -> MlflowTarget:
        """Where the writer process puts the children."""
        return MlflowTarget(self.uri, self.experiment_id, self.run_id)

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)

    def url(self) -> str:
        return run_url(ui_base_url(self.uri), self.experiment_id, self.run_id)
