"""Ray Jobs on a cluster with token authentication: `ray job submit --working-dir . -- python sweeps/bias_grid.py
--address auto` runs a sweep, the job server refuses requests without the token, and `ray job stop` ends a sweep
cleanly (parent run KILLED) so that `--resume` finishes it without duplicates."""
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.cluster.sweep_driver import child_runs, results_table, start_sweep, stop_driver

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))


@pytest.fixture
def jobs_cluster(ray_cluster):
    ray_cluster.auth, ray_cluster.dashboard = "token", True
    # `ray job stop` sends SIGTERM, then SIGKILL after this long: time for Tune to save its state and the sweep
    # to close its MLflow runs (Ray's default, 3 s, is shorter than a loaded 2-core machine needs)
    ray_cluster.start_head(num_cpus=2, env_extra={"RAY_JOB_STOP_WAIT_TIME_S": "60"})
    return ray_cluster


def ray_job(cluster, *args: str, env=None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([RAY, "job", *args], env=env or cluster.env(), capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def submit(cluster, sweep_args: list[str]) -> str:
    submitted = ray_job(cluster, "submit", "--address", cluster.dashboard_url, "--working-dir", ".", "--no-wait",
                        "--", "python", "sweeps/bias_grid.py", "--address", "auto", *sweep_args)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    return next(line.split("'")[1] for line in submitted.stdout.splitlines() if "submitted successfully" in line)


def job_state(cluster, job_id: str) -> str:
    """The job's status from the job server's REST API, asked with the cluster's token as a Ray client sends it."""
    request = urllib.request.Request(f"{cluster.dashboard_url}/api/jobs/{job_id}",
                                     headers={"Authorization": f"Bearer {cluster.token_path.read_text().strip()}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["status"]


def wait_for_job(cluster, job_id: str, states: tuple[str, ...], timeout: float) -> str:
    deadline = time.time() + timeout
    while (state := job_state(cluster, job_id)) not in states:
        assert time.time() < deadline, f"job {job_id} still {state} after {timeout} s"
        time.sleep(2)
    return state


def job_logs(cluster, job_id: str) -> str:
    return ray_job(cluster, "logs", "--address", cluster.dashboard_url, job_id).stdout


@pytest.mark.timeout(420)
def test_a_job_submitted_with_the_token_runs_a_sweep_and_one_without_it_is_refused(jobs_cluster, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    job_id = submit(jobs_cluster, ["--preset", "smoke", "--name", "job-smoke", "--out", str(tmp_path / "results"),
                                   "--mlflow-uri", uri])
    assert wait_for_job(jobs_cluster, job_id, ("SUCCEEDED", "FAILED", "STOPPED"), 300) == "SUCCEEDED", \
        job_logs(jobs_cluster, job_id)[-3000:]

    table = results_table(tmp_path / "results", "bias_grid", "job-smoke")
    assert len(table) == 4 and (table["status"] == "completed").all()
    parent, children = child_runs(uri, "bias_grid", "job-smoke")
    assert parent.info.status == "FINISHED" and len(children) == 4

    # the job server without the token: a plain HTTP request, and the CLI holding another token
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{jobs_cluster.dashboard_url}/api/jobs/", timeout=30)
    assert refused.value.code in (401, 403)
    wrong_token = tmp_path / "wrong_token"
    wrong_token.write_text("0" * 64)
    listed = ray_job(jobs_cluster, "list", "--address", jobs_cluster.dashboard_url,
                     env=jobs_cluster.env(RAY_AUTH_TOKEN_PATH=str(wrong_token)))
    assert listed.returncode != 0 and job_id not in listed.stdout


@pytest.mark.timeout(600)
def test_ray_job_stop_ends_the_sweep_cleanly_and_resume_completes_it(jobs_cluster, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = tmp_path / "results"
    args = ["--preset", "smoke", "--name", "job-stop", "--out", str(out), "--mlflow-uri", uri, "--steps", "3000",
            "--report-every", "500", "--max-concurrent-trials", "1", "--population-size", "1"]
    job_id = submit(jobs_cluster, args)
    table_path = out / "bias_grid" / "job-stop" / "results.parquet"
    deadline = time.time() + 300
    while not table_path.exists():  # the first trial finished: the sweep is well under way
        assert time.time() < deadline, job_logs(jobs_cluster, job_id)[-3000:]
        time.sleep(1)
    stopped = ray_job(jobs_cluster, "stop", "--address", jobs_cluster.dashboard_url, job_id)
    assert stopped.returncode == 0, stopped.stderr
    assert wait_for_job(jobs_cluster, job_id, ("STOPPED", "FAILED", "SUCCEEDED"), 120) == "STOPPED"
    logs = job_logs(jobs_cluster, job_id)
    assert "--name job-stop --resume" in logs, logs[-3000:]  # the sweep said how to continue

    parent, _ = child_runs(uri, "bias_grid", "job-stop")
    assert parent.info.status == "KILLED"
    kept = results_table(out, "bias_grid", "job-stop")
    assert 1 <= len(kept) < 4

    driver = start_sweep("bias_grid.py", [*args, "--resume", "--address", jobs_cluster.address],
                         jobs_cluster.env(), tmp_path, tmp_path / "resume.log")
    try:
        assert driver.wait(timeout=300) == 0, (tmp_path / "resume.log").read_text()[-3000:]
    finally:
        stop_driver(driver)
    table = results_table(out, "bias_grid", "job-stop")
    assert len(table) == 4 and table["trial_id"].is_unique and (table["status"] == "completed").all()
    finished_before = kept.set_index("trial_id")["eval/pmi"]  # rows kept as they were written, not redone
    assert table.set_index("trial_id").loc[finished_before.index, "eval/pmi"].tolist() == finished_before.tolist()
    parent, children = child_runs(uri, "bias_grid", "job-stop")
    assert parent.info.status == "FINISHED"
    assert sorted(c.data.tags["priorsweep.trial_id"] for c in children) == sorted(table["trial_id"])
    client = MlflowClient(tracking_uri=uri)
    for child in children:
        assert [m.step for m in client.get_metric_history(child.info.run_id, "eval/pmi")] == [3000]
    assert json.loads((out / "bias_grid" / "job-stop" / "sweep.json").read_text())["name"] == "job-stop"
