"""Load a sweep's results as one DataFrame (one row per trial), from its Parquet file or from MLflow, and its
record (`sweep.json`: name, study, storage, tracking URI, parent run, command, settings)."""
from pathlib import Path

import pandas as pd

from tracking.files import RESULTS_FILE, ResultsError, read_parquet, write_parquet
from tracking.sweep_record import SWEEP_RECORD, read_sweep_record, write_sweep_record

# the results files are written by tracking/ (during the sweep and by `sync`); their names are analysis's too
__all__ = ["RESULTS_FILE", "SWEEP_RECORD", "ResultsError", "load_mlflow", "load_parquet", "read_sweep_record",
           "write_parquet", "write_sweep_record"]


def load_parquet(results_dir: str | Path) -> pd.DataFrame:
    path = Path(results_dir)
    path = path / RESULTS_FILE if path.is_dir() else path
    if not path.exists():
        raise ResultsError(f"no results table at {path}")
    try:
        frame = read_parquet(path)
    except Exception as error:  # truncated, not Parquet at all: one line, whatever pyarrow raised
        raise ResultsError(f"{path} is not a readable results table ({type(error).__name__}: "
                           f"{str(error).splitlines()[0][:150] if str(error) else 'no detail'})") from None
    if "status" not in frame.columns:
        raise ResultsError(f"{path} is a Parquet file but not a sweep's results table (it has no 'status' column)")
    return frame


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

    from tracking.run_layout import STATUS_TAG, SWEEP_TAG, TRIAL_ID_TAG, tracking_problem

    problem = tracking_problem(uri)  # in seconds, one line: not MLflow's minutes of retries and a traceback
    if problem:
        raise ResultsError(problem)
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
