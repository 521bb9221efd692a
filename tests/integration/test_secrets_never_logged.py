"""A tracking URI with a password and the Ray token never appear in what a sweep prints, in the files it writes
(sweep.json, report.html, the journal, the results table, the figures' folder), in `python -m analysis` output, or
in its MLflow runs' params and tags. The database trusts local connections, so the password in the URI is accepted
and ignored: the URI is exactly what a user pastes, and only where it ends up is under test."""
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from devtools.tracking_server import PostgresServer
from tracking.secrets import redact

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def postgres(tmp_path):
    server = PostgresServer(tmp_path / "postgres").start()
    yield server
    server.stop(remove=True)


def test_a_password_in_the_tracking_uri_and_the_ray_token_are_never_written(postgres, tmp_path):
    password, token = f"pw-{secrets.token_hex(8)}", secrets.token_hex(32)
    uri = postgres.uri.replace("postgres@", f"postgres:{password}@")
    out = tmp_path / "results"
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_ADDRESS": ""}
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    sweep = subprocess.run([sys.executable, str(REPO / "sweeps" / "bias_grid.py"), "--preset", "smoke", "--name",
                            "secret", "--out", str(out), "--mlflow-uri", uri], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    report = subprocess.run([sys.executable, "-m", "analysis", "report", "--results",
                             str(out / "bias_grid" / "secret"), "--mlflow-uri", uri], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]

    written = [path for path in out.rglob("*") if path.is_file()]
    assert {"sweep.json", "report.html", "tracking.jsonl", "results.parquet"} <= {path.name for path in written}
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("bias_grid")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 5  # the parent and one child per smoke cell
    logged = [f"{key}={value}" for run in runs for key, value in {**run.data.params, **run.data.tags}.items()]
    for secret in (password, token):
        assert secret not in sweep.stdout + sweep.stderr + report.stdout + report.stderr
        assert [path for path in written if secret.encode() in path.read_bytes()] == []
        assert [entry for entry in logged if secret in entry] == []
    assert redact(uri) in (out / "bias_grid" / "secret" / "sweep.json").read_text()  # recorded, redacted
