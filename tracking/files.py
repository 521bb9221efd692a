"""A sweep's results table on disk, and the write-then-rename that keeps a reader, or a crash, from ever seeing half
a file."""
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

RESULTS_FILE = "results.parquet"  # one row per trial/cell, in the sweep's results directory


class ResultsError(RuntimeError):
    """Results cannot be found or read."""


def replace_atomically(path: str | Path, write: Callable[[Path], object]) -> None:
    """`write(temporary)` next to `path` (same name plus .tmp), then rename it over `path` in one step."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    write(temporary)
    os.replace(temporary, path)


def write_parquet(frame: "pd.DataFrame", path: str | Path) -> None:
    """Atomic (temp file + rename): a reader, or a crash, never leaves half a table."""
    replace_atomically(path, lambda temporary: frame.to_parquet(temporary, index=False))
