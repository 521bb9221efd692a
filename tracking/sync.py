"""`sync` (`python -m analysis sync`, and a sweep's own end when its writer missed something): make MLflow hold
everything a sweep's journal says, adding only what is missing.

Used after the tracking server dropped during a sweep (the driver kept going and kept every event in
`tracking.jsonl`), after a sweep run with `--no-mlflow`, or to copy a sweep to another server. Every write is
preceded by a read of what the run already has, so running sync twice, or on a sweep that lost nothing, adds
nothing: cells are found by their trial-id tag, params and artifacts by name, metric points by (key, step).
"""
from dataclasses import dataclass, fields
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tracking.files import RESULTS_FILE, ResultsError, read_parquet, write_parquet
from tracking.journal import JOURNAL_FILE, CellRecord, read_journal
from tracking.run_layout import (
    STATUS_TAG,
    child_runs,
    create_child,
    create_parent,
    experiment_id,
    find_parent,
    log_in_batches,
)
from tracking.secrets import redact
from tracking.sweep_record import read_sweep_record, write_sweep_record


@dataclass
class SyncCounts:
    runs_created: int = 0
    params: int = 0
    metric_points: int = 0
    statuses: int = 0
    artifacts: int = 0

    def __str__(self) -> str:
        return ", ".join(f"{getattr(self, f.name)} {f.name.replace('_', ' ')}" for f in fields(self))

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))


def _parent_run(client: MlflowClient, experiment: str, record: dict) -> tuple[str, bool]:
    """The sweep's parent run on this server: the recorded one, else one with the sweep's name, else a new one."""
    recorded = record.get("parent_run_id")
    if recorded:
        try:
            run = client.get_run(recorded)
            if run.info.experiment_id == experiment and run.info.lifecycle_stage == "active":
                return recorded, False
        except MlflowException:
            pass  # another server, or the run was deleted
    found = find_parent(client, experiment, record["name"])
    if found:
        return found, False
    return create_parent(client, experiment, record["name"], record.get("parent_tags", {}),
                         record.get("params", {})), True


def _missing_metrics(client: MlflowClient, run, cell: CellRecord) -> list[Metric]:
    missing = []
    for key, points in cell.metrics.items():
        have = {m.step for m in client.get_metric_history(run.info.run_id, key)} if key in run.data.metrics else set()
        missing += [Metric(key, value, stamp, step) for step, (value, stamp) in sorted(points.items())
                    if step not in have]
    return missing


def _upload_missing(client: MlflowClient, run_id: str, results_dir: Path, artifacts, counts: SyncCounts) -> None:
    listed: dict[str | None, set[str]] = {}
    for file, folder in artifacts:
        local = results_dir / file
        if not local.exists():
            continue
        if folder not in listed:
            listed[folder] = {a.path for a in client.list_artifacts(run_id, folder)}
        remote = f"{folder}/{local.name}" if folder else local.name
        if remote not in listed[folder]:
            client.log_artifact(run_id, str(local), folder)
            listed[folder].add(remote)
            counts.artifacts += 1


def _sync_cell(client, experiment, parent, runs, cell_id, cell: CellRecord, results_dir, counts) -> str:
    run_id = runs.get(cell_id)
    if run_id is None:
        run_id = runs[cell_id] = create_child(client, experiment, parent, cell_id, cell.name or cell_id)
        counts.runs_created += 1
    run = client.get_run(run_id)
    params = [Param(k, v) for k, v in cell.params.items() if k not in run.data.params]
    metrics = _missing_metrics(client, run, cell)
    wanted = {**cell.tags, **({STATUS_TAG: cell.status} if cell.status else {})}
    tags = [RunTag(key, value) for key, value in wanted.items() if run.data.tags.get(key) != value]
    log_in_batches(client, run_id, metrics=metrics, params=params, tags=tags)
    counts.params += len(params)
    counts.metric_points += len(metrics)
    if cell.run_status and run.info.status != cell.run_status:
        client.set_terminated(run_id, status=cell.run_status)
        counts.statuses += 1
    counts.statuses += len(tags)
    _upload_missing(client, run_id, results_dir, cell.artifacts, counts)
    return run_id


def sync_sweep(results_dir: str | Path, tracking_uri: str, progress=print) -> SyncCounts:
    """Replay the sweep in `results_dir` into MLflow at `tracking_uri`; returns what had to be added."""
    results_dir = Path(results_dir)
    record = read_sweep_record(results_dir)
    if not record:
        raise ResultsError(f"no sweep record (sweep.json) in {results_dir}: not a sweep's results directory")
    journal = read_journal(results_dir / JOURNAL_FILE)
    if not journal.cells:
        raise ResultsError(f"no tracking journal ({JOURNAL_FILE}) with trials in {results_dir}")
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = experiment_id(client, record["study"])
    parent, created = _parent_run(client, experiment, record)
    counts = SyncCounts(runs_created=int(created))
    runs = child_runs(client, experiment, parent)
    for number, (cell_id, cell) in enumerate(sorted(journal.cells.items()), 1):
        runs[cell_id] = _sync_cell(client, experiment, parent, runs, cell_id, cell, results_dir, counts)
        if number % 50 == 0:
            progress(f"  {number}/{len(journal.cells)} trials checked ({counts})")
    _upload_missing(client, parent, results_dir, journal.parent_artifacts, counts)
    if record.get("status") and client.get_run(parent).info.status != record["status"]:
        client.set_terminated(parent, status=record["status"])
        counts.statuses += 1
    _record_run_ids(results_dir, record, tracking_uri, parent, runs)
    return counts


def _record_run_ids(results_dir: Path, record: dict, tracking_uri: str, parent: str, runs: dict[str, str]) -> None:
    """Point the results table and the sweep record at the runs on this server (the report links to them)."""
    table_path = results_dir / RESULTS_FILE
    if table_path.exists():
        table = read_parquet(table_path)
        known = table["trial_id"].map(runs)
        table["mlflow_run_id"] = known.where(known.notna(), table.get("mlflow_run_id", ""))
        write_parquet(table, table_path)
    write_sweep_record(results_dir, {**record, "mlflow_uri": redact(tracking_uri), "parent_run_id": parent})
