"""The Tune callback that tracks a sweep's trials from the driver: a journal line and a queued MLflow write per event.

`TrialTrackingCallback` runs in the driver (MLflow calls made inside trainables would not reach the sweep's runs).
For every trial event it appends a line to the sweep's journal (`tracking.jsonl`, tracking/journal.py) and queues
the same write for the `MlflowWriter` process (tracking/writer.py), so a result costs the sweep a file append and a
queue put, never a round trip to the server; the journal is what `python -m analysis sync` replays when the server
was down. Only namespaced numbers (`train/…`, `val/…`, `eval/…`) become metrics, at the trial's own `step`; no pid,
timestamp or config noise. At a trial's end each cell gets its figure (reconstructions and samples, or the 2D
density) as an artifact, drawn in the writer process, and with `--log-checkpoints` its last checkpoint.
"""
import time
from functools import partial
from pathlib import Path

from ray.tune import Callback

from analysis.trial_figures import TRIAL_FIGURE_DIR, has_trial_figure, trial_figure
from sweeps.cells import node_tags, trial_cells
from sweeps.results_table import cell_status
from tracking.journal import JOURNAL_FILE, JournalWriter, RecordedFronts
from tracking.run_layout import flatten_params, numeric_metrics
from tracking.writer import MlflowWriter, preload_in_writers

# the writer draws the per-cell figures: its forkserver imports their module (matplotlib) once per driver
preload_in_writers(trial_figure.__module__)


class TrialTrackingCallback(Callback):
    """Journal + MLflow child runs per cell: params at start, metric curves per result, status and figure at the end.

    `writer.target` None (`--no-mlflow`): the journal and the figures are still written, so `sync` can fill an
    MLflow server later.
    """

    def __init__(self, results_dir: Path, writer: MlflowWriter, trial_label, early_stopped=(),
                 log_checkpoints: bool = False, full_config=None):
        self.results_dir = results_dir
        self.journal = JournalWriter(results_dir / JOURNAL_FILE)
        self.writer = writer
        self.trial_label = trial_label  # config -> run name, e.g. "bias=2.5 beta=1 seed=0"
        self.early_stopped = early_stopped  # ids of trials a scheduler stopped early (status 'pruned')
        self.log_checkpoints = log_checkpoints
        self.full_config = full_config or dict  # cell config -> every key with its default (the run's params)
        self.started: set[str] = set(writer.run_ids)  # on --resume, cells that already have a run
        # how far each cell's curves are recorded (on --resume, from the journal): a restored trial's repeated
        # reports add nothing twice
        self.recorded = RecordedFronts.from_journal(self.journal.path)

    def _start(self, cell: str, config: dict) -> None:
        if cell not in self.started:
            self.started.add(cell)
            name, params = self.trial_label(config), flatten_params(self.full_config(config))
            self.journal.start(cell, name, params)
            self.writer.start_cell(cell, name, params)

    def on_trial_start(self, iteration, trials, trial, **info):
        for cell, config, _ in trial_cells(trial.trial_id, trial.config, None):
            self._start(cell, config)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        timestamp = int(time.time() * 1000)
        for cell, config, metrics in trial_cells(trial.trial_id, trial.config, result):
            self._start(cell, config)
            step = int(metrics.get("step", metrics.get("training_iteration", 0)))
            values = self.recorded.new_values(cell, step, numeric_metrics(metrics))
            if values:
                self.journal.metrics(cell, step, timestamp, values)
                self.writer.log_metrics(cell, step, timestamp, values)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._end(trial, errored=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._end(trial, errored=True)

    def _end(self, trial, errored: bool) -> None:
        for cell, config, metrics in trial_cells(trial.trial_id, trial.config, trial.last_result):
            self._start(cell, config)
            status, run_status = cell_status(trial, metrics, self.early_stopped, errored), \
                "FAILED" if errored else "FINISHED"
            tags = node_tags(metrics)
            self.journal.end(cell, status, run_status, tags)
            self.writer.end_cell(cell, status, run_status, tags)
            if has_trial_figure(metrics):
                self.log_artifact(cell, Path(TRIAL_FIGURE_DIR) / f"{cell}.png", None,
                                  draw=partial(trial_figure, {**config, **metrics},
                                                     title=self.trial_label(config)))
        if self.log_checkpoints and trial.checkpoint is not None:
            self._log_checkpoint(trial)

    def log_artifact(self, cell: str | None, relative: Path, folder: str | None, draw=None) -> None:
        """Journal and upload a file (or folder) of the results directory; `draw(path)` (picklable: it runs in the
        writer process) creates it first."""
        local = self.results_dir / relative
        self.journal.artifact(cell, str(relative), folder)
        self.writer.log_artifact(cell, local, folder, None if draw is None else partial(draw, local))

    def _log_checkpoint(self, trial) -> None:
        """The trial's last checkpoint on the parent run under checkpoints/<trial id> (a population's is shared
        by its cells, so it is stored once)."""
        checkpoint = Path(trial.checkpoint.path)
        if not checkpoint.is_dir():  # remote storage (s3://…): the checkpoint stays there
            return
        try:
            relative = checkpoint.resolve().relative_to(self.results_dir.resolve())
        except ValueError:
            relative = checkpoint.resolve()  # journal keeps the absolute path; `sync` reads it as is
        self.log_artifact(None, relative, f"checkpoints/{trial.trial_id}")

    def close(self) -> None:
        self.journal.close()

    def __getstate__(self) -> dict:
        """Ray pickles the run config, callbacks included, into tuner.pkl; an open file and a process handle cannot go.
        Nothing is lost: `run_sweep` gives a restored Tuner fresh callbacks."""
        return {k: v for k, v in self.__dict__.items() if k not in ("journal", "writer")}
