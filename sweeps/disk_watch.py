"""Stopping a sweep whose disk filled up, as Ctrl-C would, instead of letting every trial fail.

A trial that cannot write its checkpoint fails, Tune restarts it, it fails again, and the next trial does the same:
the sweep would end with every unfinished trial in status error. When a trial fails, `DiskFullWatch` checks the
free space where the sweep writes (its results directory and a local Tune storage); under `MIN_FREE_BYTES` it stops
the sweep the way Ctrl-C does (SIGUSR1, which Tune answers by saving what it can and returning), so the unfinished
trials stay unfinished and `--resume` continues them once space is freed. The runner then reports the full disk in
one line (sweeps/runner.py).
"""
import shutil
import signal
from pathlib import Path

from ray.tune import Callback

MIN_FREE_BYTES = 1 << 20  # below a MiB nothing the sweep writes (a checkpoint, the table) fits


def free_bytes(paths: list[Path]) -> int:
    """The least free space among the filesystems holding `paths` (the nearest existing folder of each)."""
    free = []
    for path in paths:
        while not path.exists() and path != path.parent:
            path = path.parent
        free.append(shutil.disk_usage(path).free)
    return min(free)


class DiskFullWatch(Callback):
    def __init__(self, paths: list[Path]):
        self.paths = paths
        self.full = False

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._check()

    def on_trial_error(self, iteration, trials, trial, **info):
        self._check()

    def _check(self) -> None:
        if self.full or free_bytes(self.paths) >= MIN_FREE_BYTES:
            return
        self.full = True
        # Tune's own interrupt handler (installed only in the main thread; otherwise SIGUSR1 would end the process)
        if callable(signal.getsignal(signal.SIGUSR1)):
            signal.raise_signal(signal.SIGUSR1)

    def message(self, out_dir: Path) -> str:
        return (f"the disk holding {out_dir} is full ({free_bytes(self.paths) / 1e6:.1f} MB free): the sweep stopped; "
                "every finished result is kept; free space, then continue it with the same command and --resume")
