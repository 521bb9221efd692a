"""Sweeps against a real `mlflow server` on 127.0.0.1 with a real PostgreSQL backend (Debian's package), started
here by the project's own launcher (devtools/tracking_server.py); the server is killed in the middle of a sweep."""
import json
import threading
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from analysis.__main__ import main as analysis_main
from devtools.tracking_server import tracking_server
from sweeps.bias_grid import main as bias_grid_main
from tracking.journal import JOURNAL_FILE, read_journal

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with tracking_server(tmp_path_factory.mktemp("mlflow-server")) as running:
        yield running


def _sweep(name: str, out: Path, uri: str, *extra: str) -> int:
    return bias_grid_main(["--preset", "smoke", "--name", name, "--out", str(out), "--mlflow-uri", uri, *extra])


def _children(client: MlflowClient, sweep: str):
    experiment = client.get_experiment_by_name("bias_grid").experiment_id
    parents = client.search_runs([experiment], f"tags.`priorsweep.sweep` = '{sweep}'")
    assert len(parents) == 1
    parent = parents[0]
    return parent, client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")


def _rest_search(uri: str, experiment_id: str, filter_string: str) -> list[dict]:
    body = json.dumps({"experiment_ids": [experiment_id], "filter": filter_string, "max_results": 1000}).encode()
    request = urllib.request.Request(f"{uri}/api/2.0/mlflow/runs/search", data=body,
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read()).get("runs", [])


def test_a_sweep_lands_as_one_parent_with_a_child_per_cell(server, local_ray, tmp_path):
    assert _sweep("server-smoke", tmp_path, server.uri, "--log-checkpoints") == 0
    client = MlflowClient(tracking_uri=server.uri)
    parent, children = _children(client, "server-smoke")
    table = pd.read_parquet(tmp_path / "bias_grid" / "server-smoke" / "results.parquet")
    assert parent.info.status == "FINISHED"
    tags = parent.data.tags
    assert tags["priorsweep.preset"] == "smoke" and tags["priorsweep.search"] == "grid"
    assert tags["version.mlflow"] == "3.17.2" and tags["ray.cpus_per_trial"] == "1.0"
    assert tags["ray.max_failures"] == "2"
    assert len(tags["mlflow.source.git.commit"]) == 40
    assert len(children) == len(table) == 4
    assert {c.info.run_id for c in children} == set(table["mlflow_run_id"])
    for child in children:
        row = table[table["mlflow_run_id"] == child.info.run_id].iloc[0]
        params = child.data.params
        assert float(params["bias"]) == row["bias"] and float(params["beta"]) == row["beta"]
        assert params["hidden_width"] == "32" and params["learning_rate"] == "0.001"  # defaults filled in
        assert child.data.tags["priorsweep.status"] == "completed" and child.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(child.info.run_id, "val/neg_elbo")] == [50, 100]
        assert client.get_metric_history(child.info.run_id, "eval/pmi")[0].step == 100
        figure = [a.path for a in client.list_artifacts(child.info.run_id)]
        assert figure == [f"{row['trial_id']}.png"]
    parent_files = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"heatmap_pmi.png", "heatmap_decoder_mse.png", "report.html", "results.parquet"} <= parent_files
    # --log-checkpoints: each trial's (population's) last checkpoint, once, on the parent
    trials = sorted({cell.rsplit("-", 1)[0] for cell in table["trial_id"]})
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "checkpoints")] == \
        [f"checkpoints/{trial}" for trial in trials]
    for trial in trials:  # the state and the report it went with (trainables/trial_loop.py)
        assert sorted(a.path for a in client.list_artifacts(parent.info.run_id, f"checkpoints/{trial}")) == \
            [f"checkpoints/{trial}/population.pt", f"checkpoints/{trial}/report.json"]
    local_copy = client.download_artifacts(parent.info.run_id, "report.html", str(tmp_path))
    assert "server-smoke" in Path(local_copy).read_text() and "data:image/png;base64," in Path(local_copy).read_text()

    # the UI reads runs through the REST API: the same parent and children come back there
    experiment = parent.info.experiment_id
    rest_children = _rest_search(server.uri, experiment, f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert {r["info"]["run_id"] for r in rest_children} == {c.info.run_id for c in children}
    rest_parent = _rest_search(server.uri, experiment, "tags.`priorsweep.sweep` = 'server-smoke'")
    assert [r["info"]["run_id"] for r in rest_parent] == [parent.info.run_id]


def _kill_when_trials_report(server, journal: Path, killed: threading.Event) -> None:
    """Kill the server as soon as the sweep has logged its first metrics (mid-sweep, trials running)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if journal.exists() and '"event":"metrics"' in journal.read_text():
            server.kill()
            killed.set()
            return
        time.sleep(0.05)


def test_server_killed_mid_sweep_then_sync_restores_every_trial_exactly_once(server, local_ray, tmp_path, capsys):
    out = tmp_path / "bias_grid" / "outage"
    killed = threading.Event()
    watcher = threading.Thread(target=_kill_when_trials_report, args=(server, out / JOURNAL_FILE, killed))
    watcher.start()
    # longer trials than smoke (10 reports per cell), so the outage lands while they run
    code = _sweep("outage", tmp_path, server.uri, "--steps", "1000", "--report-every", "100")
    watcher.join()
    assert killed.is_set() and code == 0  # the sweep finished without its tracking server
    assert "python -m analysis sync" in capsys.readouterr().err
    table = pd.read_parquet(out / "results.parquet")
    assert len(table) == 4 and (table["status"] == "completed").all()

    server.start()  # back up, same database: sync fills in what the sweep could not log
    assert analysis_main(["sync", "--results", str(out), "--mlflow-uri", server.uri]) == 0
    assert "added:" in capsys.readouterr().out

    client = MlflowClient(tracking_uri=server.uri)
    parent, children = _children(client, "outage")
    assert parent.info.status == "FINISHED"
    journal = read_journal(out / JOURNAL_FILE)
    by_cell = {c.data.tags["priorsweep.trial_id"]: c for c in children}
    assert sorted(by_cell) == sorted(journal.cells) == sorted(table["trial_id"])  # every trial exactly once
    for cell, record in journal.cells.items():
        run = client.get_run(by_cell[cell].info.run_id)
        assert run.info.status == "FINISHED" and run.data.tags["priorsweep.status"] == "completed"
        assert run.data.params == record.params
        for key, points in record.metrics.items():
            history = client.get_metric_history(run.info.run_id, key)
            assert sorted(m.step for m in history) == sorted(points), key  # each step once, none missing
        assert list(record.metrics["val/neg_elbo"]) == list(range(100, 1001, 100))
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == [f"{cell}.png"]
    assert "report.html" in {a.path for a in client.list_artifacts(parent.info.run_id)}

    # a second sync finds nothing to add
    assert analysis_main(["sync", "--results", str(out), "--mlflow-uri", server.uri]) == 0
    assert "nothing added" in capsys.readouterr().out


def _kill_then_restart(server, journal: Path, back: threading.Event) -> None:
    """Kill the server at the sweep's first metrics, start it again at once (the sweep goes on meanwhile)."""
    killed = threading.Event()
    _kill_when_trials_report(server, journal, killed)
    if killed.is_set():
        server.start()
        back.set()


def test_server_back_mid_sweep_the_sweep_itself_restores_what_it_missed_exactly_once(server, local_ray, tmp_path,
                                                                                       capsys):
    out = tmp_path / "bias_grid" / "blip"
    back = threading.Event()
    watcher = threading.Thread(target=_kill_then_restart, args=(server, out / JOURNAL_FILE, back))
    watcher.start()
    # one cell at a time, long enough that the server is back while cells still run
    code = _sweep("blip", tmp_path, server.uri, "--steps", "3000", "--report-every", "100", "--population-size", "1",
                  "--max-concurrent-trials", "1")
    watcher.join()
    output = capsys.readouterr()
    assert back.is_set() and code == 0
    assert "restored:" in output.out  # the sweep's own sync at its end, not a command left to the user
    assert "python -m analysis sync" not in output.err

    client = MlflowClient(tracking_uri=server.uri)
    parent, children = _children(client, "blip")
    assert parent.info.status == "FINISHED"
    table = pd.read_parquet(out / "results.parquet")
    by_cell = {c.data.tags["priorsweep.trial_id"]: c for c in children}
    assert sorted(by_cell) == sorted(table["trial_id"]) and len(by_cell) == 4  # every cell once
    for run in by_cell.values():
        assert run.info.status == "FINISHED" and run.data.tags["priorsweep.status"] == "completed"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/neg_elbo")]
        assert sorted(steps) == list(range(100, 3001, 100))  # every report, none twice
    assert analysis_main(["sync", "--results", str(out), "--mlflow-uri", server.uri]) == 0
    assert "nothing added" in capsys.readouterr().out


def test_the_writer_rides_out_an_outage_without_doubling_anything(server):
    """Live logging stops when the server dies, resumes when it answers, and never writes a point twice; a cell
    first seen during the outage gets its run (with params) once the server is back."""
    from tracking.run_layout import child_runs, create_parent, experiment_id
    from tracking.writer import MlflowTarget, MlflowWriter

    client = MlflowClient(tracking_uri=server.uri)
    experiment = experiment_id(client, "writer_outage")
    parent = create_parent(client, experiment, "outage", {}, {})
    writer = MlflowWriter(MlflowTarget(server.uri, experiment, parent), {}, retry_every_s=1.0)
    writer.start_cell("a", "run a", {"beta": "1"})
    writer.log_metrics("a", 1, 0, {"train/loss": 1.0})
    writer.flush()
    assert writer.online and writer.dropped == 0

    server.kill()
    writer.log_metrics("a", 2, 0, {"train/loss": 2.0})
    writer.start_cell("b", "run b", {"beta": "2"})
    writer.flush()
    assert not writer.online and writer.dropped >= 2

    server.start()
    time.sleep(1.2)  # past the retry interval
    writer.log_metrics("a", 3, 0, {"train/loss": 3.0})
    writer.log_metrics("b", 3, 0, {"train/loss": 3.5})
    writer.end_cell("b", "completed", "FINISHED")
    assert writer.close() is False  # something was lost to the outage: the sweep will sync
    assert writer.online
    runs = child_runs(client, experiment, parent)
    assert sorted(runs) == ["a", "b"]
    assert [m.step for m in client.get_metric_history(runs["a"], "train/loss")] == [1, 3]
    b = client.get_run(runs["b"])
    assert b.data.params == {"beta": "2"} and b.info.status == "FINISHED"
    assert [m.value for m in client.get_metric_history(runs["b"], "train/loss")] == [3.5]
