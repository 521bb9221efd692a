"""Load a sweep's results as one DataFrame (one row per trial), from its Parquet file or from MLflow, and its
record (`sweep.json`: name, study, storage, tracking URI, parent run, command, settings)."""
import json
import os
from pathlib import Path

import pandas as pd

RESULTS_FILE = "results.parquet"
SWEEP_RECORD = "sweep.json"


class ResultsError(RuntimeError):
    """Results cannot be found or read."""


def load_parquet(results_dir: str | Path) -> pd.DataFrame:
    path = Path(results_dir)
    path = path / RESULTS_FILE if path.is_dir() else path
    if not path.exists():
        raise ResultsError(f"no results table at {path}")
    return pd.read_parquet(path)


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Atomic (temp file + rename): a reader, or a crash, never leaves half a table."""
    temporary = Path(path).with_suffix(".parquet.tmp")
    frame.to_parquet(temporary, index=False)
    os.replace(temporary, path)


def read_sweep_record(results_dir: Path) -> dict:
    path = Path(results_dir) / SWEEP_RECORD
    return json.loads(path.read_text()) if path.exists() else {}


def write_sweep_record(results_dir: Path, record: dict) -> None:
    """Atomic (temp file + rename), like the results table."""
    path = Path(results_dir) / SWEEP_RECORD
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
    os.replace(temporary, path)


def _number_or_text(value: str):
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(value, value)


def load_mlflow(uri: str, experiment: str, sweep: str | None = None) -> pd.DataFrame:
    """Child runs of one sweep (the newest sweep of the experiment unless `sweep` names one) as a results table."""
    from mlflow.tracking import MlflowClient

    from analysis.mlflow_runs import STATUS_TAG, SWEEP_TAG, TRIAL_ID_TAG

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ResultsError(f"no MLflow experiment named '{experiment}' at {uri}")
    sweep_filter = f"tags.`{SWEEP_TAG}` = '{sweep}'" if sweep else f"tags.`{SWEEP_TAG}` != ''"
    parents = client.search_runs([found.experiment_id], filter_string=sweep_filter,
                                 order_by=["attributes.start_time DESC"], max_results=1)
    if not parents:
        raise ResultsError(f"no sweep {'named ' + repr(sweep) + ' ' if sweep else ''}in experiment '{experiment}'")
    parent = parents[0]
    children = client.search_runs([found.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
                                  max_results=50_000)
    rows = []
    for run in children:
        row = {"study": experiment, "sweep": parent.info.run_name, "trial_id": run.data.tags.get(TRIAL_ID_TAG, ""),
               "status": run.data.tags.get(STATUS_TAG, run.info.status.lower()), "mlflow_run_id": run.info.run_id}
        row.update({k: _number_or_text(v) for k, v in run.data.params.items()})
        row.update(run.data.metrics)
        rows.append(row)
    if not rows:
        raise ResultsError(f"sweep '{parent.info.run_name}' has no trial runs in MLflow")
    return pd.DataFrame(rows)
