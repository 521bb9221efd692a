"""A sweep's tracking session from start to close: the sweep record, the parent run, the writer and the trial
callback, wired together for one sweep.

Start: `sweep.json` (what `sync` and `report` need: study, name, tracking URI, parent run and its tags, settings)
and, with MLflow, the parent run. During the sweep: `TrialTrackingCallback`. Close: the sweep's files on the parent
run, the writer drained, anything an outage cost restored from the journal (`sync`) or the command to do it printed,
the parent run ended, the final status recorded.
"""
import sys
from pathlib import Path

from sweeps.errors import TrackingError
from sweeps.tracking_callback import TrialTrackingCallback
from tracking.parent_run import ParentRun, parent_tags
from tracking.run_layout import tracking_problem
from tracking.secrets import redact
from tracking.sweep_record import read_sweep_record, write_sweep_record
from tracking.sync import sync_sweep
from tracking.writer import MlflowWriter


def check_tracking_uri(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast (one clear line) when the tracking server or database does not answer."""
    problem = tracking_problem(uri, timeout_s)
    if problem:
        raise TrackingError(problem)


class SweepSession:
    """One sweep's tracking: its record, parent run, writer process and Tune callback; `close(status)` ends it."""

    def __init__(self, settings, trial_label, early_stopped, sweep_params: dict, full_config=None):
        self.settings = settings
        self.out_dir: Path = settings.out_dir
        previous = read_sweep_record(self.out_dir)
        ray_settings = {"ray.cpus_per_trial": settings.cpus_per_trial, "ray.gpus_per_trial": settings.gpus_per_trial,
                        "ray.max_failures": settings.max_failures, "ray.address": settings.address or "local",
                        "ray.max_concurrent_trials": settings.max_concurrent_trials or "unlimited"}
        tags = parent_tags(settings.name, {"priorsweep.study": settings.study,
                                           **{k: str(v) for k, v in ray_settings.items()}, **settings.tags})
        self.parent: ParentRun | None = None
        run_ids: dict[str, str] = {}
        if settings.mlflow_uri:
            self.parent = ParentRun(settings.mlflow_uri, settings.study)
            resume_id = previous.get("parent_run_id") if settings.resume else None
            self.parent.start(settings.name, tags, sweep_params, resume_run_id=resume_id)
            run_ids = self.parent.children()
        self.writer = MlflowWriter(self.parent.target() if self.parent else None, run_ids)
        self.callback = TrialTrackingCallback(self.out_dir, self.writer, trial_label, early_stopped,
                                              settings.log_checkpoints, full_config)
        self.record = {
            "study": settings.study, "name": settings.name, "storage": redact(settings.experiment_path),
            "mlflow_uri": redact(settings.mlflow_uri) if settings.mlflow_uri else None,
            "parent_run_id": self.parent.run_id if self.parent else None,
            "experiment_id": self.parent.experiment_id if self.parent else None, "parent_tags": tags,
            "command": redact(" ".join(sys.argv)), "params": sweep_params, "status": "RUNNING",
            "report_columns": list(settings.report_columns),
        }
        write_sweep_record(self.out_dir, self.record)

    @property
    def run_ids(self) -> dict[str, str]:
        return self.writer.run_ids

    def flush(self) -> None:
        self.writer.flush()

    def log_sweep_files(self, patterns: tuple[str, ...]) -> None:
        for pattern in patterns:
            for path in sorted(self.out_dir.glob(pattern)):
                self.callback.log_artifact(None, path.relative_to(self.out_dir), None)

    def close(self, status: str) -> None:
        """End the sweep's tracking (once; later calls do nothing); never raises for MLflow trouble (the results
        are safe on disk by now)."""
        if self.record["status"] != "RUNNING":
            return
        complete = self.writer.close()
        self.callback.close()
        self.record["status"] = status
        write_sweep_record(self.out_dir, self.record)
        if self.parent is None:
            return
        uri = self.parent.uri
        shown = redact(uri)  # what is printed: the password stays in this process
        try:
            if not complete or self.settings.resume:
                # an outage now, or in the run this one resumes (its writes may never have reached MLflow)
                check_tracking_uri(uri)
                print(f"checking MLflow against the journal ({self.writer.dropped} writes missed in this run)")
                print(f"restored: {sync_sweep(self.out_dir, uri)}")
            self.parent.finish(status)
            print(f"parent run: {self.parent.url()}")
        except Exception as error:
            print(f"warning: MLflow at {shown} is not complete for this sweep "
                  f"({redact(str(error).splitlines()[0][:200])}); every result is in {self.out_dir}; when the server "
                  f"is back run:\n  python -m analysis sync --results {self.out_dir} --mlflow-uri {shown}",
                  file=sys.stderr)
