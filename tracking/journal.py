"""The tracking journal: `tracking.jsonl` in a sweep's results directory, everything MLflow should hold about it.

The sweep's driver appends one JSON line per event before it hands the same event to MLflow, so the journal is
complete even when the tracking server is down; `python -m analysis sync` replays it into MLflow, adding only what
MLflow lacks. Lines (all carry "event"):

    {"event": "start",    "cell": ID, "name": RUN NAME, "params": {KEY: TEXT}}
    {"event": "metrics",  "cell": ID, "step": N, "time": MS, "metrics": {KEY: NUMBER}}
    {"event": "end",      "cell": ID, "status": completed|diverged|pruned|error, "run_status": FINISHED|FAILED,
                          "tags": {KEY: TEXT} (optional: e.g. the Ray node the cell ran on)}
    {"event": "artifact", "cell": ID or null (the sweep's parent run), "file": PATH RELATIVE TO THE DIRECTORY,
                          "artifact_path": FOLDER IN THE RUN or null}

Plain JSON and the standard library only: the journal is read where Ray is not installed.
"""
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

JOURNAL_FILE = "tracking.jsonl"


@dataclass
class CellRecord:
    """What one cell's MLflow run should hold."""

    name: str = ""
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, dict[int, tuple[float, int]]] = field(default_factory=dict)  # key -> step -> (value, ms)
    status: str | None = None  # None: the cell never ended (the driver stopped while it ran)
    run_status: str | None = None
    tags: dict[str, str] = field(default_factory=dict)  # run tags beside the status (priorsweep.node, …)
    artifacts: list[tuple[str, str | None]] = field(default_factory=list)  # (file, artifact_path)


@dataclass
class SweepJournal:
    cells: dict[str, CellRecord] = field(default_factory=dict)
    parent_artifacts: list[tuple[str, str | None]] = field(default_factory=list)


class JournalWriter:
    """Appends events; each line is flushed to the OS at once, so a crashed driver loses nothing it wrote."""

    def __init__(self, path: Path):
        self.path = path
        drop_cut_last_line(path)
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (open for the sweep's whole life)

    def _write(self, event: dict) -> None:
        self._file.write(json.dumps(event, separators=(",", ":")) + "\n")
        self._file.flush()

    def start(self, cell: str, name: str, params: dict[str, str]) -> None:
        self._write({"event": "start", "cell": cell, "name": name, "params": params})

    def metrics(self, cell: str, step: int, timestamp_ms: int, metrics: dict[str, float]) -> None:
        self._write({"event": "metrics", "cell": cell, "step": step, "time": timestamp_ms, "metrics": metrics})

    def end(self, cell: str, status: str, run_status: str, tags: dict[str, str] | None = None) -> None:
        self._write({"event": "end", "cell": cell, "status": status, "run_status": run_status, "tags": tags or {}})

    def artifact(self, cell: str | None, file: str, artifact_path: str | None = None) -> None:
        self._write({"event": "artifact", "cell": cell, "file": file, "artifact_path": artifact_path})

    def close(self) -> None:
        self._file.close()


def drop_cut_last_line(path: Path) -> None:
    """A driver killed mid-write leaves a last line without its newline; the next line appended after it would make
    one broken line inside the journal. The cut line was never a whole event: it is dropped."""
    lines = path.read_bytes() if path.exists() else b""
    if lines and not lines.endswith(b"\n"):
        with open(path, "rb+") as journal:
            journal.truncate(lines.rfind(b"\n") + 1)


class RecordedFronts:
    """Where each cell's metric curves have got to: its newest step and the metrics recorded at it.

    A trial reports its steps in increasing order; restored from a checkpoint (a resumed sweep, a restart after a
    failure) it reports again the steps after that checkpoint, all at or behind this front. `new_values` keeps
    what lies ahead of it, so every (step, metric) point is recorded once, the first value kept. One step and its
    keys per cell: memory does not grow with a trial's reports."""

    def __init__(self, fronts: dict[str, tuple[int, set[str]]] | None = None):
        self.fronts = fronts or {}

    @classmethod
    def from_journal(cls, path: Path) -> "RecordedFronts":
        fronts = {}
        for cell, record in read_journal(path).cells.items():
            steps = {step for points in record.metrics.values() for step in points}
            if steps:
                newest = max(steps)
                fronts[cell] = (newest, {key for key, points in record.metrics.items() if newest in points})
        return cls(fronts)

    def new_values(self, cell: str, step: int, values: dict[str, float]) -> dict[str, float]:
        newest, keys = self.fronts.get(cell, (-1, set()))
        if step < newest:
            return {}
        if step > newest:
            keys = set()
            self.fronts[cell] = (step, keys)
        fresh = {key: value for key, value in values.items() if key not in keys}
        keys.update(fresh)
        return fresh


class JournalError(ValueError):
    """A line inside the journal (not the last, which a crash may cut short) is not an event."""


def read_journal(path: Path) -> SweepJournal:
    """Fold the events into what each run should hold; the last value wins for a repeated (key, step)."""
    journal = SweepJournal()
    if not path.exists():
        return journal
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                if line.endswith("\n"):
                    raise JournalError(f"{path}:{number} is not a JSON line: the journal is damaged there; "
                                       "remove or repair that line (the lines after it are kept), then run the command "
                                       "again") from None
                break  # a line cut short by a crash is the journal's end
            _apply(journal, event)
    return journal


def _apply(journal: SweepJournal, event: dict) -> None:
    kind, cell_id = event["event"], event.get("cell")
    if kind == "artifact" and cell_id is None:
        journal.parent_artifacts.append((event["file"], event.get("artifact_path")))
        return
    cell = journal.cells.setdefault(cell_id, CellRecord())
    if kind == "start":
        cell.name, cell.params = event["name"], {**cell.params, **event["params"]}
    elif kind == "metrics":
        for key, value in event["metrics"].items():
            if value is not None and math.isfinite(value):
                cell.metrics.setdefault(key, {})[int(event["step"])] = (float(value), int(event["time"]))
    elif kind == "end":
        cell.status, cell.run_status = event["status"], event["run_status"]
        cell.tags.update(event.get("tags") or {})
    elif kind == "artifact":
        entry = (event["file"], event.get("artifact_path"))
        if entry not in cell.artifacts:
            cell.artifacts.append(entry)
