"""The shared report loop after a restore: a trial restored from its final checkpoint (the driver died before it
processed the final report) reports that final report again, so it never ends on an intermediate one; a trial
restored mid-way goes on from its step and does not repeat the restored report."""
import torch

from trainables.trial_loop import report_until_done


class CountingRun:
    """A run whose training only advances its step."""

    def __init__(self):
        self.step = 0

    def train_interval(self, num_steps: int) -> dict:
        self.step += num_steps
        return {"train/loss": 1.0 / self.step}


class RestoringSink:
    """Restores the run at `step` with the report its checkpoint went with; keeps every report."""

    def __init__(self, step: int, report: dict):
        self.step, self.restored_report, self.reports = step, report, []

    def restore(self, run) -> bool:
        run.step = self.step
        return True

    def report(self, metrics: dict, run, checkpoint: bool) -> None:
        self.reports.append(metrics)


def build_report(interval: dict, finished: bool) -> dict:
    return dict(interval)


def test_a_trial_restored_from_its_final_checkpoint_reports_its_final_report_again():
    final = {"step": 600, "status": "completed", "eval/pmi": 0.01}
    sink = RestoringSink(600, final)
    report_until_done(CountingRun(), 600, 100, torch.device("cpu"), build_report, sink=sink)
    assert sink.reports == [final]


def test_a_trial_restored_mid_way_goes_on_without_repeating_the_restored_report():
    sink = RestoringSink(400, {"step": 400, "status": "running"})
    report_until_done(CountingRun(), 600, 100, torch.device("cpu"), build_report, sink=sink)
    assert [(r["step"], r["status"]) for r in sink.reports] == [(500, "running"), (600, "completed")]
