"""A sweep whose disk fills up mid-sweep: one clear error line (exit status 1), nothing written half, every finished
result kept, and `--resume` finishes it once space is freed. The results directory and Tune's state sit on a real
64 MB tmpfs, filled by a ballast file as soon as the trials have reported (an event, not a time)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tracking.files import read_parquet
from tracking.journal import read_journal

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "sweeps" / "bias_grid.py"


@pytest.fixture
def small_disk(tmp_path):
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount_point)], check=True)
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill(disk: Path) -> Path:
    ballast = disk / "ballast"
    with open(ballast, "wb", buffering=0) as sink:  # unbuffered: closing has nothing left to fail on
        try:
            while True:
                sink.write(b"\0" * (1 << 16))
        except OSError:
            pass
    return ballast


def run_driver(args: list[str], log: Path, cwd: Path, when_started=None) -> int:
    with open(log, "w") as sink:
        driver = subprocess.Popen([sys.executable, str(SCRIPT), *args], cwd=cwd, start_new_session=True,
                                  stdout=sink, stderr=subprocess.STDOUT)
    try:
        if when_started is not None:
            when_started(driver)
        return driver.wait(timeout=300)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()


@pytest.mark.parametrize("on_small_disk", ["results and state", "state only"])
def test_a_full_disk_stops_the_sweep_in_one_line_keeps_everything_and_resume_finishes(small_disk, tmp_path,
                                                                                      on_small_disk):
    """'state only': the results directory has room, Tune's storage (--storage) fills: the trials' checkpoints fail
    while every table write succeeds, so only the free-space check after a trial failure stops the sweep."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"  # the tracking database on another disk, as a server would be
    results = small_disk / "results" if on_small_disk == "results and state" else tmp_path / "results"
    out = results / "bias_grid" / "full"
    args = ["--preset", "smoke", "--name", "full", "--out", str(results), "--storage", str(small_disk / "tune"),
            "--mlflow-uri", uri, "--steps", "2000", "--report-every", "100"]
    ballast: list[Path] = []

    def fill_at_first_report(driver):
        deadline = time.monotonic() + 240
        journal = out / "tracking.jsonl"
        while not (journal.exists() and '"event":"metrics"' in journal.read_text()):
            assert driver.poll() is None and time.monotonic() < deadline, "the sweep ended before reporting"
            time.sleep(0.05)
        ballast.append(fill(small_disk))

    code = run_driver(args, tmp_path / "full.log", tmp_path, fill_at_first_report)
    log = (tmp_path / "full.log").read_text()
    last = [line for line in log.splitlines() if line.strip()][-1]
    assert code == 1 and last.startswith("error: the disk holding") and "--resume" in last, log[-3000:]
    # Ray prints the failed trial's own traceback; none comes from the sweep's code
    assert f'File "{REPO / "sweeps"}' not in log and f'File "{REPO / "tracking"}' not in log
    # nothing half-written: no temporary left, every file the sweep keeps reads whole
    assert not list(out.glob("*.tmp"))
    assert json.loads((out / "sweep.json").read_text())["name"] == "full"
    read_journal(out / "tracking.jsonl")  # raises on a broken line inside
    kept = read_parquet(out / "results.parquet") if (out / "results.parquet").exists() else None

    ballast[0].unlink()  # space freed
    assert run_driver([*args, "--resume"], tmp_path / "resume.log", tmp_path) == 0, \
        (tmp_path / "resume.log").read_text()[-3000:]
    table = read_parquet(out / "results.parquet")
    assert len(table) == 4 and table["trial_id"].is_unique and (table["status"] == "completed").all()
    if kept is not None:
        assert set(kept["trial_id"]) <= set(table["trial_id"])
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("bias_grid").experiment_id
    parent = client.search_runs([experiment], "tags.`priorsweep.sweep` = 'full'")
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent[0].info.run_id}'")
    assert sorted(c.data.tags["priorsweep.trial_id"] for c in children) == sorted(table["trial_id"])
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val/neg_elbo")]
        assert sorted(steps) == list(range(100, 2001, 100))  # every report once, across the stop and the resume


def test_a_grid_whose_only_saved_state_is_cut_resumes_under_its_ids_and_keeps_what_finished(tmp_path):
    """What a full disk can leave: Tune's only experiment state (and search state) cut to nothing. The resume
    cannot restore Tune; the grid goes on under the sweep's own trial ids, skipping the trial that finished, so every
    cell ends once in the table and once in MLflow."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = tmp_path / "results" / "bias_grid" / "lost"
    args = ["--preset", "smoke", "--name", "lost", "--out", str(tmp_path / "results"), "--mlflow-uri", uri,
            "--steps", "2000", "--report-every", "500", "--max-concurrent-trials", "1"]

    def kill_after_the_first_trial(driver):
        deadline = time.monotonic() + 240
        table = out / "results.parquet"
        while not (table.exists() and len(read_parquet(table)) >= 2):  # one population trial = 2 cells
            assert driver.poll() is None and time.monotonic() < deadline, "the sweep ended before a trial finished"
            time.sleep(0.05)
        os.killpg(driver.pid, signal.SIGKILL)

    run_driver(args, tmp_path / "first.log", tmp_path, kill_after_the_first_trial)
    kept = read_parquet(out / "results.parquet")
    state = tmp_path / "results" / "bias_grid" / "_tune" / "lost"
    for saved in [*state.glob("experiment_state-*.json"), *state.glob("search_gen_state-*.json")]:
        saved.write_bytes(b"")
    assert run_driver([*args, "--resume"], tmp_path / "resume.log", tmp_path) == 0, \
        (tmp_path / "resume.log").read_text()[-3000:]
    assert "saved Tune state is lost" in (tmp_path / "resume.log").read_text()
    table = read_parquet(out / "results.parquet")
    assert len(table) == 4 and table["trial_id"].is_unique and (table["status"] == "completed").all()
    assert set(kept["trial_id"]) <= set(table["trial_id"])
    assert table.set_index("trial_id").loc[kept["trial_id"], "step"].tolist() == kept["step"].tolist()
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("bias_grid").experiment_id
    [parent] = client.search_runs([experiment], "tags.`priorsweep.sweep` = 'lost'")
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(c.data.tags["priorsweep.trial_id"] for c in children) == sorted(table["trial_id"])
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val/neg_elbo")]
        assert sorted(steps) == list(range(500, 2001, 500))
