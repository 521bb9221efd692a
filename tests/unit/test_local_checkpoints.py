"""Checkpoints of `--backend processes` trials (sweeps/local_checkpoints.py through the backend's PrintingSink): a trial
killed after a report continues from it to the metrics an uninterrupted trial ends with, and a kill in the middle of
writing a checkpoint leaves the previous one whole."""
import json
import shutil
from pathlib import Path

import pytest

from sweeps import local_checkpoints
from sweeps.local_backend import PrintingSink
from trainables.introvae import IntroVaeRun, train_introvae
from trainables.trial_loop import REPORT_FILE

# tiny: a MoG prior, warm-up to iteration 30, then the introspective stage; a report (and checkpoint) every 15
CONFIG = {"prior": "mog", "steps": 90, "num_vae": 30, "report_every": 15, "batch_size": 32, "hidden_width": 16,
          "num_components": 4, "lr_milestones": "", "eval_points": 200, "gnelbo_grid": 16, "gnelbo_data_points": 64,
          "density_image": 8, "device": "cpu"}


class Killed(Exception):
    """Stands for the process dying just after a checkpointed report."""


class SinkKilledAfter(PrintingSink):
    def __init__(self, checkpoints, at_step: int):
        super().__init__("cell", (), checkpoints)
        self.at_step = at_step

    def report(self, metrics: dict, run, checkpoint: bool) -> None:
        super().report(metrics, run, checkpoint)
        if metrics["step"] == self.at_step:
            raise Killed


def evaluation(report: dict) -> dict:
    return {k: v for k, v in report.items() if k.startswith(("eval/", "train/")) and "per_second" not in k
            and not k.endswith("_seconds")}


@pytest.mark.parametrize("killed_at", [15, 45])  # in the warm-up; in the introspective stage
def test_a_trial_killed_after_a_report_continues_from_it_to_an_uninterrupted_trials_metrics(killed_at, tmp_path):
    uninterrupted = PrintingSink("cell", ())
    train_introvae(CONFIG, sink=uninterrupted)

    checkpoints = tmp_path / "checkpoints" / "local-0"
    with pytest.raises(Killed):
        train_introvae(CONFIG, sink=SinkKilledAfter(checkpoints, killed_at))
    resumed = PrintingSink("cell", (), checkpoints)
    train_introvae(CONFIG, sink=resumed)

    assert resumed.restored_report["step"] == killed_at
    assert resumed.last["resumed_at_step"] == killed_at and resumed.last["step"] == CONFIG["steps"]
    assert "eval/kl" in evaluation(resumed.last) and "eval/gnelbo" in evaluation(resumed.last)
    assert evaluation(resumed.last) == evaluation(uninterrupted.last)  # bit for bit: state and generator restored


def test_a_kill_between_the_renames_of_a_checkpoint_leaves_the_previous_one_readable(tmp_path):
    directory = tmp_path / "local-0"
    run = IntroVaeRun(CONFIG)
    run.train_interval(5)
    local_checkpoints.save(directory, run, {"step": 5})
    run.train_interval(5)
    local_checkpoints.save(directory, run, {"step": 10})
    directory.rename(tmp_path / "local-0.old")  # the first rename of a third save done, the second not

    again = IntroVaeRun(CONFIG)
    assert local_checkpoints.restore(directory, again) == {"step": 10} and again.step == 10
    local_checkpoints.remove(directory)
    assert list(tmp_path.iterdir()) == [] and local_checkpoints.restore(directory, IntroVaeRun(CONFIG)) is None


@pytest.mark.parametrize("left_by_the_last_kill", ["a whole checkpoint", "only .old (a kill between the renames)"])
def test_at_every_step_of_a_save_a_whole_checkpoint_stays_readable(left_by_the_last_kill, tmp_path, monkeypatch):
    """A kill can fall after any file operation of a save: after each one, the trial's checkpoint (or its `.old`)
    holds a whole report, the previous one or the new one; also when the save follows a restore from `.old`."""
    directory = tmp_path / "local-0"
    run = IntroVaeRun(CONFIG)
    run.train_interval(5)
    local_checkpoints.save(directory, run, {"step": 5})
    if left_by_the_last_kill.startswith("only"):
        directory.rename(tmp_path / "local-0.old")
    run.train_interval(5)

    seen = []

    def readable_after(operation):
        def wrapped(*args, **kwargs):
            result = operation(*args, **kwargs)
            found = local_checkpoints.readable_directory(directory)
            seen.append(None if found is None else json.loads((found / REPORT_FILE).read_text())["step"])
            return result
        return wrapped

    monkeypatch.setattr(local_checkpoints.shutil, "rmtree", readable_after(shutil.rmtree))
    monkeypatch.setattr(Path, "rename", readable_after(Path.rename))
    local_checkpoints.save(directory, run, {"step": 10})
    monkeypatch.undo()

    assert len(seen) >= 3 and set(seen) <= {5, 10} and seen[-1] == 10, seen
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local-0"]
