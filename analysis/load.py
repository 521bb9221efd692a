"""Load a sweep's results as one DataFrame (one row per trial), from its Parquet file or from MLflow, and its
record (`sweep.json`: name, study, storage, tracking URI, parent run, command, settings)."""
from pathlib import Path

import numpy as np
import pandas as pd

from tracking.files import RESULTS_FILE, ResultsError, read_parquet, write_parquet
from tracking.sweep_record import SWEEP_RECORD, read_sweep_record, write_sweep_record

# the results files are written by tracking/ (during the sweep and by `sync`); their names are analysis's too
__all__ = ["BOOKKEEPING", "RESULTS_FILE", "SWEEP_RECORD", "ResultsError", "combine_pieces", "load_mlflow",
           "load_parquet", "read_sweep_record", "write_parquet", "write_sweep_record"]


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


# a row's bookkeeping, not part of what distinguishes its cell
BOOKKEEPING = {"study", "sweep", "trial_id", "status", "mlflow_run_id", "wall_time_s", "step", "diverged_at_step",
               "device", "gpu_ids", "resumed_at_step", "node_id", "node_ip"}


def combine_pieces(pieces: list[pd.DataFrame]) -> tuple[pd.DataFrame, list[str]]:
    """Results tables of a sweep run in pieces, as one: (table, the cells replaced). A cell run again in a later
    piece (e.g. redone after a fix) replaces its rows of earlier pieces, whatever either's status; a cell is its
    settings in every column all pieces have (seed included), so pieces written before a setting existed still
    match. Rows of one piece are all kept (a search may try one setting twice)."""
    shared = set.intersection(*(set(piece.columns) for piece in pieces))
    identity = [c for c in pieces[0].columns if c in shared and "/" not in c and c not in BOOKKEEPING]
    frame = pd.concat(pieces, ignore_index=True)
    if not identity:
        return frame, []
    keys = frame[identity].astype(str)  # lists and NaNs compare as text
    piece = pd.Series(np.repeat(np.arange(len(pieces)), [len(p) for p in pieces]), index=frame.index)
    replaced = piece < piece.groupby([keys[c] for c in identity]).transform("max")
    varying = [c for c in identity if keys[c].nunique() > 1]
    labels = sorted({" ".join(f"{c}={row[c]}" for c in varying) for _, row in keys[replaced].iterrows()})
    return frame[~replaced].reset_index(drop=True), labels


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
