"""Bad input ends with one clear line and exit status 2, before anything starts (nothing is created)."""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "sweeps" / "bias_grid.py"


def run_sweep_script(tmp_path, *args, script=SCRIPT):
    command = [sys.executable, str(script), "--preset", "smoke", "--out", str(tmp_path / "results"),
               "--mlflow-uri", f"sqlite:///{tmp_path}/mlflow.db", *args]
    # a Ray started by the script would make its session folder here (a short path: Ray's sockets live in it)
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp")) / "ray"
    environment = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
    try:
        finished = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=environment)
        finished.started_ray = ray_tmp.exists()
        return finished
    finally:
        shutil.rmtree(ray_tmp.parent, ignore_errors=True)


# refusals that need the cluster's resources: Ray is started (and ended) to learn them
NEEDS_THE_CLUSTER = ("no node of this cluster can run", "cannot reach the Ray cluster")


def assert_nothing_created(tmp_path, finished) -> None:
    """No results folder, no Tune state, no MLflow database, no Ray session (unless the check needs the cluster)."""
    assert not (tmp_path / "results").exists() and not (tmp_path / "mlflow.db").exists()
    if not any(reason in finished.stderr for reason in NEEDS_THE_CLUSTER):
        assert not finished.started_ray


@pytest.mark.parametrize("args, message", [
    (["--betas", "-1"], "config key 'beta' must be >= 0"),
    (["--steps", "0"], "config key 'steps' must be > 0"),
    (["--hidden-width", "0"], "config key 'hidden_width' must be > 0"),
    (["--mlflow-uri", "http://127.0.0.1:9"], "cannot reach MLflow tracking server at http://127.0.0.1:9"),
    (["--mlflow-uri", "sqlite:////no/such/dir/mlflow.db"], "directory does not exist"),
    (["--mlflow-uri", "postgresql://postgres@127.0.0.1:9/mlflow"], "cannot open MLflow database"),
    (["--resume", "--name", "never-ran"], "nothing to resume"),
    (["--search", "optuna"], "--search optuna tunes at one cell"),
    (["--gpus-per-trial", "1.5"], "whole number"),
    (["--progress-every", "-1"], "--progress-every must be >= 0 seconds"),
    # values that make no sense are refused, not run
    (["--betas", "1", "1"], "--betas lists a value twice"),
    (["--population-size", "0"], "--population-size must be >= 1"),
    (["--max-failures", "-5"], "--max-failures must be >= 0"),
    (["--max-concurrent-trials", "0"], "--max-concurrent-trials must be >= 1"),
    (["--parallel", "0", "--backend", "processes"], "--parallel and --threads must be >= 1"),
    # inputs only a cluster user gives: refused in seconds, not after minutes of Ray's retries or an endless wait
    (["--name", "../escape"], "a sweep name is 1-100 letters"),
    (["--name", ""], "a sweep name is 1-100 letters"),
    (["--address", "127.0.0.1:1"], "cannot reach the Ray cluster at 127.0.0.1:1"),
    (["--address", "head-node"], "expected HOST:PORT"),
    (["--cpus-per-trial", "1000"], "no node of this cluster can run a trial that needs 1000 CPU"),
    (["--gpus-per-trial", "1"], "can run a trial that needs 1 CPU and 1 GPU"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    finished = run_sweep_script(tmp_path, *args)
    assert finished.returncode == 2, finished.stderr
    lines = [line for line in finished.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and message in lines[-1], finished.stderr
    assert "Traceback" not in finished.stderr
    assert_nothing_created(tmp_path, finished)


@pytest.mark.parametrize("args, message", [
    (["--prior", "gaussian"], "invalid choice"),
    (["--seeds", "0", "0"], "--seeds lists a value twice"),
    (["--population-size", "0"], "--population-size must be >= 1"),
    (["--num-vae", "100", "--steps", "50"], "'num_vae' must be <= steps"),
    (["--mlflow-uri", "http://127.0.0.1:9"], "cannot reach MLflow tracking server"),
])
def test_bad_input_to_the_soft_introvae_sweep_is_one_line_and_exit_2(tmp_path, args, message):
    finished = run_sweep_script(tmp_path, *args, script=SCRIPT.with_name("introvae_prior.py"))
    assert finished.returncode == 2 and "Traceback" not in finished.stderr
    assert message in finished.stderr.strip().splitlines()[-1], finished.stderr
    assert_nothing_created(tmp_path, finished)


def test_bad_input_to_analysis_is_one_line_and_exit_2_and_writes_nothing(tmp_path):
    (tmp_path / "not-a-table.parquet").write_bytes(b"PAR1 cut")
    for args in (["heatmaps", "--results", str(tmp_path / "missing")],
                 ["tables", "--results", str(tmp_path / "not-a-table.parquet")],
                 ["heatmaps", "--mlflow-uri", "http://127.0.0.1:9", "--experiment", "bias_grid"]):
        finished = subprocess.run([sys.executable, "-m", "analysis", *args, "--out", str(tmp_path / "results")],
                                  capture_output=True, text=True, timeout=120, cwd=SCRIPT.parents[1])
        lines = finished.stderr.strip().splitlines()
        assert finished.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), (args, finished.stderr)
    assert not (tmp_path / "results").exists()


def test_unknown_flag_and_preset_are_refused_by_the_parser(tmp_path):
    for args in (["--betaz", "1"], ["--preset", "huge"]):
        finished = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)
        assert finished.returncode == 2
        assert "error:" in finished.stderr.splitlines()[-1]


def test_a_sweep_name_is_never_reused(tmp_path):
    (tmp_path / "results" / "bias_grid" / "taken").mkdir(parents=True)
    (tmp_path / "results" / "bias_grid" / "taken" / "results.parquet").write_bytes(b"")
    finished = run_sweep_script(tmp_path, "--name", "taken")
    assert finished.returncode == 2
    assert "already exists" in finished.stderr.splitlines()[-1]


def test_resuming_over_a_damaged_journal_is_one_line_before_anything_starts(tmp_path):
    (tmp_path / "results" / "bias_grid" / "_tune" / "broken").mkdir(parents=True)
    (tmp_path / "results" / "bias_grid" / "_tune" / "broken" / "tuner.pkl").write_bytes(b"")
    journal = tmp_path / "results" / "bias_grid" / "broken" / "tracking.jsonl"
    journal.parent.mkdir()
    journal.write_text('{"event": "start", "cell"\n{"event": "end", "cell": "a"}\n')
    finished = run_sweep_script(tmp_path, "--name", "broken", "--resume")
    assert finished.returncode == 2 and "Traceback" not in finished.stderr
    assert "tracking.jsonl:1 is not a JSON line" in finished.stderr.splitlines()[-1]
    assert not (tmp_path / "mlflow.db").exists() and journal.read_text().count("\n") == 2  # untouched


def test_help_documents_every_flag():
    finished = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0
    for flag in ("--betas", "--biases", "--seeds", "--steps", "--name", "--address", "--storage", "--mlflow-uri",
                 "--cpus-per-trial", "--gpus-per-trial", "--resume", "--out", "--search", "--preset"):
        assert flag in finished.stdout


def test_sync_refuses_a_directory_that_is_not_a_sweep_and_an_unreachable_server(tmp_path):
    from tracking.journal import JournalWriter
    from tracking.sweep_record import write_sweep_record

    def sync(uri):
        return subprocess.run([sys.executable, "-m", "analysis", "sync", "--results", str(tmp_path), "--mlflow-uri",
                               uri], capture_output=True, text=True, timeout=120, cwd=tmp_path)

    finished = sync(f"sqlite:///{tmp_path}/mlflow.db")
    assert finished.returncode == 2 and "no sweep record (sweep.json)" in finished.stderr.splitlines()[-1]
    write_sweep_record(tmp_path, {"study": "bias_grid", "name": "s"})
    journal = JournalWriter(tmp_path / "tracking.jsonl")
    journal.start("c", "c", {})
    journal.close()
    finished = sync("http://127.0.0.1:9")
    assert finished.returncode == 2, finished.stderr
    assert finished.stderr.splitlines()[-1].startswith("error: cannot reach MLflow tracking server at http://127.0.0")
    assert "Traceback" not in finished.stderr
