"""Nothing finished is lost, nothing is doubled, however often the driver dies: a sweep SIGKILLed again and again
(at ten points, from its first trials to its final writes) and resumed each time ends with every cell once in its
table and in MLflow, each with one history. Kill points are events (journal lines, the table's rows), not times, so
a loaded machine changes how long this takes, not what it tests."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tracking.files import read_parquet

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SCRIPT = Path(__file__).resolve().parents[2] / "sweeps" / "bias_grid.py"
JOURNAL_LINES = (4, 8, 12, 16, 20, 24, 28, 32, 36)  # kill once the journal holds this many events


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def run_until_killed(args: list[str], cwd: Path, ready) -> bool:
    """Start the driver in its own process group; SIGKILL the group once `ready()`; False if it finished first."""
    log = cwd / f"driver-{len(list(cwd.glob('driver-*.log')))}.log"
    with open(log, "w") as sink:
        driver = subprocess.Popen([sys.executable, str(SCRIPT), *args], cwd=cwd, start_new_session=True,
                                  stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while driver.poll() is None:
            assert time.time() < deadline, "the driver neither finished nor reached the kill point"
            if ready():
                os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started die at once
                driver.wait()
                return True
            time.sleep(0.05)
        assert driver.returncode == 0, log.read_text()[-3000:]
        return False
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()


def test_ten_kills_and_resumes_lose_and_double_nothing(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = tmp_path / "results" / "bias_grid" / "killed"
    journal, table = out / "tracking.jsonl", out / "results.parquet"
    args = ["--preset", "smoke", "--name", "killed", "--out", str(tmp_path / "results"), "--mlflow-uri", uri,
            "--steps", "600", "--report-every", "100", "--population-size", "1", "--max-concurrent-trials", "1"]
    kills = 0
    assert run_until_killed(args, tmp_path, lambda: lines(journal) >= JOURNAL_LINES[0])
    kills += 1
    for threshold in JOURNAL_LINES[1:]:
        if run_until_killed([*args, "--resume"], tmp_path, lambda t=threshold: lines(journal) >= t):
            kills += 1
    # the last kill point: every row is written, the report and MLflow's closing are not yet
    if run_until_killed([*args, "--resume"], tmp_path,
                        lambda: table.exists() and len(read_parquet(table)) == 4):
        kills += 1
    assert kills >= 8  # most kill points fell inside a run (the sweep is longer than the journal thresholds)
    assert not run_until_killed([*args, "--resume"], tmp_path, lambda: False)  # and now it finishes

    frame = read_parquet(table)
    assert len(frame) == 4 and frame["trial_id"].is_unique and (frame["status"] == "completed").all()
    assert (frame["step"] == 600).all()
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("bias_grid")
    parents = client.search_runs([experiment.experiment_id], "tags.`priorsweep.sweep` = 'killed'")
    assert len(parents) == 1
    children = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'")
    assert sorted(c.data.tags["priorsweep.trial_id"] for c in children) == sorted(frame["trial_id"])
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val/neg_elbo")]
        assert sorted(steps) == [100, 200, 300, 400, 500, 600], steps  # one history: every report once


def test_a_killed_optuna_search_resumes_with_its_sampler_going_on_not_starting_over(tmp_path):
    """Killed after three of eight Optuna trials: the resumed search adds the five missing trials, each suggesting
    new parameters (a sampler restarted from its seed would repeat the first ones), and finishes none twice, also
    when the kill came before Tune saved its state (a finished trial Tune forgets still counts)."""
    import optuna
    from optuna.trial import TrialState

    out = tmp_path / "results" / "bias_grid" / "tpe-killed"
    args = ["--preset", "smoke", "--search", "optuna", "--biases", "0", "--betas", "1", "--seeds", "0",
            "--num-samples", "8", "--steps", "200", "--report-every", "100", "--name", "tpe-killed",
            "--max-concurrent-trials", "1", "--out", str(tmp_path / "results"), "--no-mlflow"]
    table = out / "results.parquet"
    assert run_until_killed(args, tmp_path, lambda: table.exists() and len(read_parquet(table)) >= 3)
    assert not run_until_killed([*args, "--resume"], tmp_path, lambda: False)
    frame = read_parquet(table)
    study = optuna.load_study(study_name="tpe-killed", storage=f"sqlite:///{out / 'optuna.db'}")
    assert len(frame) == 8 and frame["trial_id"].is_unique
    done = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    params = [tuple(sorted(t.params.items())) for t in done]
    assert len(done) == 8 and len(set(params)) == 8  # every trial its own suggestion: no restart from the seed
    # ASHA's early stops after the resume are still told to Optuna as PRUNED and shown as pruned, not as COMPLETE
    # with a truncated value
    assert set(frame["status"]) <= {"completed", "pruned"}
    assert (frame["status"] == "pruned").sum() == sum(t.state == TrialState.PRUNED for t in done)
    # the Optuna trial asked for just before the kill (no Tune trial left to finish it) is told FAIL on resume,
    # never left RUNNING; the resumed search asks again and counts only what finished
    orphans = [t for t in study.trials if t.state not in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(orphans) <= 1 and all(t.state == TrialState.FAIL for t in orphans)
