"""The report loop every trial shares: restore or start, train an interval, evaluate, checkpoint, report.

A study's run object (BiasGridRun, IntroVaeRun) provides `step`, `train_interval(n)` (raising Diverged on a
non-finite loss), `save(dir)` and `restore(dir)`; the study says what to evaluate after each interval. Where the
reports go is the sink's business: Tune's (checkpoint + `tune.report`) inside a Ray trial, or any object with the
same two methods outside Ray (sweeps/local_backend.py).
"""
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from trainables.runtime import (
    assigned_gpu_ids,
    flush_denormals,
    node_identity,
    quiet_ray_worker_logs,
    resolve_device,
    use_assigned_cpus,
)


class Diverged(RuntimeError):
    """A non-finite loss; `step` is the first step (iteration) that produced it."""

    def __init__(self, step: int):
        super().__init__(f"non-finite loss at step {step}")
        self.step = step


class UnreadableCheckpoint(RuntimeError):
    """The checkpoint file is missing, cut short or not a checkpoint (nothing of it was applied)."""


class Checkpointed:
    """A run's checkpoint: its `state_dict()` in one file of the checkpoint directory, loaded onto its `device`."""

    checkpoint_file = "state.pt"
    device: torch.device

    def save(self, directory) -> None:
        torch.save(self.state_dict(), Path(directory) / self.checkpoint_file)

    def restore(self, directory) -> None:
        path = Path(directory) / self.checkpoint_file
        try:
            state = torch.load(path, map_location=self.device, weights_only=False)
        except Exception as error:  # truncated by a full disk or a node lost mid-write, or not ours at all
            raise UnreadableCheckpoint(f"{path.name}: {type(error).__name__}: {str(error)[:120]}") from None
        self.load_state_dict(state)


def restore_or_start_over(run, directory) -> bool:
    """Continue `run` from the checkpoint in `directory` (True); an unreadable one is one warning and a clean start
    from step 0 (False), not a trial that fails on every retry."""
    try:
        run.restore(directory)
        return True
    except UnreadableCheckpoint as error:
        print(f"warning: unreadable checkpoint ({error}); this trial starts again from step 0", file=sys.stderr,
              flush=True)
        return False


def timed_steps(one_step: Callable[[], dict], num_steps: int) -> tuple[list[dict], float]:
    """`num_steps` calls of `one_step` (each returns its metrics as tensors, no host sync); (metrics, seconds)."""
    start = time.perf_counter()
    parts = [one_step() for _ in range(num_steps)]
    return parts, time.perf_counter() - start


def raise_if_diverged(finite: torch.Tensor, first_step: int) -> None:
    """finite: (steps,) bools of one interval that began after step `first_step`; Diverged at the first False."""
    if not bool(finite.all()):
        raise Diverged(first_step + int((~finite).nonzero()[0]) + 1)


def interval_means(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Mean over the interval's steps of each metric the last step reports (a stage change mid-interval: the
    stage it ended in), over the steps that report it; a per-member metric (P,) keeps its shape."""
    return {key: torch.stack([p[key] for p in parts if key in p]).mean(dim=0) for key in parts[-1]}


def plain_value(value):
    """numpy and torch scalars and arrays in a report, as JSON numbers and lists."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


REPORT_FILE = "report.json"  # beside the run's state in each checkpoint: the report the checkpoint went with


def write_checkpoint(directory, run, report: dict) -> None:
    """The run's state and the report it goes with, into the (existing, empty) checkpoint `directory`."""
    run.save(directory)
    (Path(directory) / REPORT_FILE).write_text(json.dumps(report, default=plain_value))


def read_checkpoint(run, directory) -> dict | None:
    """Continue `run` from the checkpoint in `directory`: the report it went with ({} if it holds none), or None
    when it is unreadable and the run starts over."""
    if not restore_or_start_over(run, directory):
        return None
    report = Path(directory) / REPORT_FILE
    return json.loads(report.read_text()) if report.exists() else {}


class TuneSink:
    """Reports to Ray Tune, each with a checkpoint of the run and its report; a restarted trial resumes from the last
    one (`restored_report`: that checkpoint's report)."""

    restored_report: dict | None = None

    def restore(self, run) -> bool:
        from ray import tune

        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return False
        with checkpoint.as_directory() as directory:
            report = read_checkpoint(run, directory)
        self.restored_report = report or None
        return report is not None

    def report(self, metrics: dict, run, checkpoint: bool) -> None:
        from ray import tune

        if not checkpoint:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as directory:
            write_checkpoint(directory, run, metrics)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def trial_device(requested: str) -> torch.device:
    """The trial's device and CPU thread budget, subnormals flushed, Ray's per-checkpoint log lines silenced."""
    use_assigned_cpus()
    flush_denormals()
    quiet_ray_worker_logs()
    return resolve_device(requested)


def report_until_done(run, total_steps: int, report_every: int, device: torch.device,
                      build_report: Callable[[object, bool], dict],
                      on_fresh_start: Callable[[], None] | None = None,
                      on_divergence: Callable[[], dict] | None = None, sink=None) -> None:
    """Train to `total_steps`, reporting (with a checkpoint) every `report_every` steps.

    build_report(what train_interval returned, finished) makes each report's metrics; a Diverged ends the trial
    with status 'diverged' and the step, plus on_divergence()'s metrics. A restarted trial continues from its last
    checkpoint. `sink` (default: Tune) receives the reports.
    """
    sink = sink or TuneSink()
    if not sink.restore(run) and on_fresh_start is not None:
        on_fresh_start()
    # total_steps: the budget, for the driver's progress lines (sweeps/progress.py); resumed_at_step: where this
    # run of the trial began (0, or the checkpoint a restart after a crash or a lost node continued from)
    context = {"device": device.type, "gpu_ids": ",".join(assigned_gpu_ids()), "total_steps": total_steps,
               "resumed_at_step": run.step, **node_identity()}
    if run.step >= total_steps and sink.restored_report is not None:
        # restored from the checkpoint of the final report, which the driver never processed (killed just then):
        # that report again, so the trial ends with its final metrics (points already recorded are not doubled)
        sink.report(sink.restored_report, run, checkpoint=False)
    while run.step < total_steps:
        try:
            interval = run.train_interval(min(report_every, total_steps - run.step))
        except Diverged as diverged:
            sink.report({**context, **(on_divergence() if on_divergence else {}), "step": diverged.step,
                         "status": "diverged", "diverged_at_step": diverged.step}, run, checkpoint=False)
            return
        finished = run.step >= total_steps
        metrics = build_report(interval, finished)
        metrics.update(context, step=run.step, status="completed" if finished else "running")
        sink.report(metrics, run, checkpoint=True)
