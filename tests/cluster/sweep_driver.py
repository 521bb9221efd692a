"""Running a sweep script as its own driver process against a cluster, and reading back what it left: the results
table, its MLflow runs, and the results Tune persisted per trial on the shared storage."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from tracking.files import read_parquet

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"


def start_sweep(script: str, args: list[str], env: dict, cwd: Path, log: Path) -> subprocess.Popen:
    """The sweep's driver in its own process group (ended by `stop_driver`), output to `log`."""
    with open(log, "w") as sink:
        return subprocess.Popen([sys.executable, str(SWEEPS / script), *args], env=env, cwd=cwd, stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop_driver(driver: subprocess.Popen) -> None:
    if driver.poll() is None:
        try:
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        driver.wait(timeout=30)


def latest_trial_results(experiment_dir: Path) -> list[dict]:
    """The last result each trial persisted to the storage (result.json, one JSON line per report)."""
    latest = []
    for result_file in experiment_dir.glob("*/result.json"):
        lines = [line for line in result_file.read_text().splitlines() if line.strip()]
        if lines:
            try:
                latest.append(json.loads(lines[-1]))
            except json.JSONDecodeError:  # a line being written
                pass
    return latest


def child_runs(uri: str, study: str, sweep: str) -> tuple[object, list]:
    """The sweep's parent run and its children."""
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(study)
    [parent] = client.search_runs([experiment.experiment_id], f"tags.`priorsweep.sweep` = '{sweep}'")
    children = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    return parent, children


def results_table(out: Path, study: str, sweep: str) -> pd.DataFrame:
    return read_parquet(out / study / sweep / "results.parquet")
