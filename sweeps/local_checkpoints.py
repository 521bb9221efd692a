"""Checkpoints of `--backend processes` trials: one directory per trial under <out>/checkpoints/<trial id>/, holding
the run's state and the report it went with (trainables/trial_loop.REPORT_FILE), as a Ray trial's checkpoint does.

A new checkpoint is written whole beside the current one, then swapped in by two renames; a process killed at any
moment leaves either the new one, the current one, or (between the renames) the current one under `.old`, which
`readable_directory` then offers. So a killed trial continues from its last report, not from step 0.
"""
import shutil
from pathlib import Path

from trainables.trial_loop import REPORT_FILE, read_checkpoint, write_checkpoint

CHECKPOINTS = "checkpoints"


def checkpoint_directory(out_dir: Path, trial_id: str) -> Path:
    return out_dir / CHECKPOINTS / trial_id


def _sibling(directory: Path, suffix: str) -> Path:
    return directory.with_name(directory.name + suffix)


def save(directory: Path, run, report: dict) -> None:
    """The run's state and `report`, replacing what `directory` held (never leaving it half written)."""
    new, old = _sibling(directory, ".new"), _sibling(directory, ".old")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    write_checkpoint(new, run, report)
    if directory.exists():  # else `.old` may be the only whole checkpoint (a kill fell between the renames): kept
        shutil.rmtree(old, ignore_errors=True)
        directory.rename(old)
    new.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def readable_directory(directory: Path) -> Path | None:
    """The trial's last complete checkpoint: `directory`, or its `.old` if a kill fell between the two renames."""
    for candidate in (directory, _sibling(directory, ".old")):
        if (candidate / REPORT_FILE).exists():
            return candidate
    return None


def restore(directory: Path, run) -> dict | None:
    """Continue `run` from the trial's last checkpoint; the report it went with, or None (nothing to continue)."""
    found = readable_directory(directory)
    return None if found is None else read_checkpoint(run, found)


def remove(directory: Path) -> None:
    """A finished trial's checkpoints (its rows are in results.parquet)."""
    for path in (directory, _sibling(directory, ".old"), _sibling(directory, ".new")):
        shutil.rmtree(path, ignore_errors=True)


def remove_finished(out_dir: Path, finished: set[str]) -> None:
    """The checkpoints of trials whose rows are in results.parquet, where a kill fell between writing the rows and
    removing them. (Those of trials outside this run's grid stay: a later command with other flags may continue
    them.)"""
    for trial_id in finished:
        remove(checkpoint_directory(out_dir, trial_id))
