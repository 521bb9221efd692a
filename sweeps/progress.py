"""Progress of running trials on the console, for sweeps whose trials take minutes to hours.

The results table prints a line when a trial ends; a 30,000-iteration Soft-IntroVAE trial or a 10,000-step
population runs for an hour before that. This callback prints, at most every `every_s` seconds (and at the first
result), one line per running trial: its step out of its budget, its current rate and the time it has left, and
the figures the study reports at every interval. Trials report their budget as `total_steps`
(trainables/trial_loop.py); the rate is the last interval's, so a stage change (warm-up -> introspective) shows
up at once in the estimate.
"""
import time

from ray.tune import Callback

from sweeps.cells import trial_cells
from sweeps.progress_text import trial_progress


class ProgressCallback(Callback):
    def __init__(self, label, every_s: float, keys: tuple[str, ...] = (), total: int = 0):
        self.label = label  # cell config -> its name, as in the results table
        self.total = total  # the sweep's trials (Tune creates them a few at a time, so its list is shorter at first)
        self.every_s = every_s
        self.keys = keys  # the study's progress metrics
        self.latest: dict[str, tuple[str, str]] = {}  # trial id -> (label, progress text)
        self.previous: dict[str, tuple[int, float]] = {}  # trial id -> (step, time_total_s) of its last result
        self.last_print: float | None = None

    def _label(self, trial) -> str:
        cells = trial_cells(trial.trial_id, trial.config, None)
        label = self.label(cells[0][1])
        return label if len(cells) == 1 else f"{label} and {len(cells) - 1} more cells"

    def on_trial_result(self, iteration, trials, trial, result, **info):
        step, seconds = int(result.get("step", 0)), float(result.get("time_total_s", 0.0))
        before_step, before_seconds = self.previous.get(trial.trial_id, (0, 0.0))
        elapsed = seconds - before_seconds
        rate = (step - before_step) / elapsed if elapsed > 0 and step > before_step else 0.0
        self.previous[trial.trial_id] = (step, seconds)
        metrics = result if "population" not in result else {}  # a population's figures are per member
        self.latest[trial.trial_id] = (self._label(trial),
                                       trial_progress(step, int(result.get("total_steps", 0)), rate, metrics,
                                                                      self.keys))
        now = time.monotonic()
        if self.last_print is not None and now - self.last_print < self.every_s:
            return
        self.last_print = now
        running = {t.trial_id for t in trials if t.status == "RUNNING"} | {trial.trial_id}
        done = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        lines = [f"  {label}: {text}" for trial_id, (label, text) in self.latest.items() if trial_id in running]
        total = max(self.total, len(trials))
        print(f"[progress {time.strftime('%H:%M:%S')}] {len(running)} running, {done}/{total} trials done\n"
              + "\n".join(lines), flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.latest.pop(trial.trial_id, None)

    on_trial_error = on_trial_complete
