"""One Parquet row per finished trial, written as each trial ends (so a crashed driver loses nothing finished),
plus one progress line per finished trial on the console."""
import sys
import time
from pathlib import Path

import pandas as pd
from ray.tune import Callback

from sweeps.cells import cell_row, trial_cells
from tracking.files import read_parquet, write_parquet


def cell_status(trial, metrics: dict, early_stopped, errored: bool) -> str:
    """completed | diverged | pruned (stopped early by the scheduler) | error."""
    if errored:
        return "error"
    if trial.trial_id in early_stopped:
        return "pruned"
    return metrics.get("status", "completed")


def read_rows(path: Path) -> dict[str, dict]:
    """The rows of an existing table by cell id; an unreadable one is kept aside (never deleted) with a warning, and
    its rows come back from the sweep's Tune state (ResultsTableCallback.on_step_begin)."""
    if not path.exists():
        return {}
    try:
        return {row["trial_id"]: row for row in read_parquet(path).to_dict("records")}
    except Exception as error:  # truncated, not Parquet, another program's file: all one case here
        kept = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
        path.rename(kept)
        print(f"warning: {path} is unreadable ({type(error).__name__}: {str(error)[:120]}); kept as {kept.name}, "
              "its rows are rebuilt from the sweep's saved Tune state", file=sys.stderr, flush=True)
        return {}


def write_table(rows: list[dict], path: Path) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    write_parquet(frame, path)
    return frame


class ResultsTableCallback(Callback):
    def __init__(self, path: Path, study: str, sweep: str, label, total: int, early_stopped=(), run_ids=None,
                 headline: tuple[str, ...] = ()):
        self.path = path
        self.headline = headline  # the study's metrics a finished cell's line shows
        self.study, self.sweep, self.label, self.total = study, sweep, label, total
        self.early_stopped = early_stopped
        self.run_ids = run_ids if run_ids is not None else {}  # trial_id -> MLflow run id (the tracking callback's)
        self.rows: dict[str, dict] = read_rows(path)  # --resume: keep what finished before
        self.started = time.time()
        self.resumed_rows = len(self.rows)
        self.checked_restored = False

    def on_step_begin(self, iteration, trials, **info):
        self._recover(trials)

    def on_experiment_end(self, trials, **info):
        self._recover(trials)  # a sweep whose trials had all finished never steps

    def _recover(self, trials) -> None:
        """Once, on --resume: trials Tune restored as finished whose rows the table lacks (a table lost or cut short,
        a driver killed between a trial's end and its row) get their rows from the trial's saved last result."""
        if self.checked_restored:
            return
        self.checked_restored = True
        for trial in trials:
            if trial.status in ("TERMINATED", "ERROR") and trial.last_result and not all(
                    cell_id in self.rows for cell_id, _, _ in trial_cells(trial.trial_id, trial.config, None)):
                self._record(trial, errored=trial.status == "ERROR")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._record(trial, errored=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._record(trial, errored=True)

    def _record(self, trial, errored: bool) -> None:
        for cell_id, config, metrics in trial_cells(trial.trial_id, trial.config, trial.last_result):
            status = cell_status(trial, metrics, self.early_stopped, errored)
            row = cell_row(cell_id, config, metrics, status, self.study, self.sweep, self.run_ids.get(cell_id))
            self.rows[cell_id] = row
            self._print(row, config)
        write_table(list(self.rows.values()), self.path)

    def _print(self, row: dict, config: dict) -> None:
        headline = ", ".join(f"{k.removeprefix('eval/')} {row[k]:.4g}" for k in
                             self.headline if isinstance(row.get(k), (int, float)))
        elapsed, done = time.time() - self.started, len(self.rows)
        rate = elapsed / max(1, done - self.resumed_rows)  # seconds per cell finished by this run
        left = f", ~{rate * (self.total - done) / 60:.1f} min left" if done < self.total else ""
        print(f"[{done}/{self.total} done, {elapsed:.0f} s{left}] {self.label(config)}: {row['status']}"
              f"{' — ' + headline if headline else ''} ({row['wall_time_s']:.1f} s)", flush=True)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.rows.values()))
