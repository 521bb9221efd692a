"""A sweep's results table on disk, and the write-then-rename that keeps a reader, or a crash, from ever seeing half
a file."""
import errno
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
    """`write(temporary)` next to `path` (same name plus .tmp), then rename it over `path` in one step; a write that
    fails (a full disk) leaves `path` as it was and no temporary behind."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """A text file (a table, a summary, a report page), whole or not at all."""
    replace_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def is_disk_full(error: BaseException) -> bool:
    """A write failed for want of space (a full disk or an exhausted quota), wherever it was raised."""
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def read_parquet(path: str | Path) -> "pd.DataFrame":
    """The whole table as it is at one moment. pyarrow, given a path, takes the file's size first and opens it after:
    a write landing in between (a running sweep replaces its table as each trial ends) makes it read the new file
    with the old size, a "Page was smaller than expected" error. Reading the bytes through one open file cannot mix
    two versions."""
    import io

    import pandas as pd

    return pd.read_parquet(io.BytesIO(Path(path).read_bytes()))


def write_parquet(frame: "pd.DataFrame", path: str | Path) -> None:
    """Atomic (temp file + rename): a reader, or a crash, never leaves half a table."""
    replace_atomically(path, lambda temporary: frame.to_parquet(temporary, index=False))
