"""The report loop every Tune trial shares: restore or start, train an interval, evaluate, checkpoint, report.

A study's run object (BiasGridRun, IntroVaeRun) provides `step`, `train_interval(n)` (raising Diverged on a
non-finite loss), `save(dir)` and `restore(dir)`; the study says what to evaluate after each interval.
"""
import tempfile
from collections.abc import Callable

import torch
from ray import tune

from trainables.runtime import assigned_gpu_ids, quiet_ray_worker_logs, resolve_device, use_assigned_cpus


class Diverged(RuntimeError):
    """A non-finite loss; `step` is the first step (iteration) that produced it."""

    def __init__(self, step: int):
        super().__init__(f"non-finite loss at step {step}")
        self.step = step


def trial_device(requested: str) -> torch.device:
    """The trial's device and CPU thread budget, with Ray's per-checkpoint log lines silenced."""
    use_assigned_cpus()
    quiet_ray_worker_logs()
    return resolve_device(requested)


def report_until_done(run, total_steps: int, report_every: int, device: torch.device,
                      build_report: Callable[[object, bool], dict],
                      on_fresh_start: Callable[[], None] | None = None,
                      on_divergence: Callable[[], dict] | None = None) -> None:
    """Train to `total_steps`, reporting (with a checkpoint) every `report_every` steps.

    build_report(what train_interval returned, finished) makes each report's metrics; a Diverged ends the trial
    with status 'diverged' and the step, plus on_divergence()'s metrics. A restarted trial continues from its last
    checkpoint.
    """
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            run.restore(directory)
    elif on_fresh_start is not None:
        on_fresh_start()
    # total_steps: the budget, for the driver's progress lines (sweeps/progress.py)
    context = {"device": device.type, "gpu_ids": ",".join(assigned_gpu_ids()), "total_steps": total_steps}
    while run.step < total_steps:
        try:
            interval = run.train_interval(min(report_every, total_steps - run.step))
        except Diverged as diverged:
            tune.report({**context, **(on_divergence() if on_divergence else {}), "step": diverged.step,
                         "status": "diverged", "diverged_at_step": diverged.step})
            return
        finished = run.step >= total_steps
        metrics = build_report(interval, finished)
        metrics.update(context, step=run.step, status="completed" if finished else "running")
        with tempfile.TemporaryDirectory() as directory:
            run.save(directory)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
