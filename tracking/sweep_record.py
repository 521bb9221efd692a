"""The sweep record, `sweep.json` in a sweep's results directory: what `sync` and `report` need to know about the
sweep (study, name, storage, tracking URI, parent run and its tags, command, settings, final status)."""
import json
from pathlib import Path

from tracking.files import replace_atomically

SWEEP_RECORD = "sweep.json"


def read_sweep_record(results_dir: str | Path) -> dict:
    """The record, or {} where the directory has none."""
    path = Path(results_dir) / SWEEP_RECORD
    return json.loads(path.read_text()) if path.exists() else {}


def write_sweep_record(results_dir: str | Path, record: dict) -> None:
    """Atomic (temp file + rename), like the results table."""
    text = json.dumps(record, indent=2, sort_keys=True, default=str)
    replace_atomically(Path(results_dir) / SWEEP_RECORD, lambda temporary: temporary.write_text(text))
