"""The MLflow writer process: what the driver queues arrives in MLflow (SQLite file), and the process never outlives
the driver that started it."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from functools import partial
from pathlib import Path

from mlflow.tracking import MlflowClient

from tracking.run_layout import STATUS_TAG, create_parent, experiment_id
from tracking.writer import MlflowTarget, MlflowWriter

MLFLOW_STORES = ("mlflow.store.tracking.sqlalchemy_store", "mlflow.store.tracking.rest_store")


def _write_marker(text: str, path: Path) -> None:
    path.write_text(text)


def _write_loaded_stores(path: Path) -> None:
    remembered_absent = ["dbruntime"] if "dbruntime" in sys.modules and sys.modules["dbruntime"] is None else []
    path.write_text(" ".join([name for name in MLFLOW_STORES if name in sys.modules] + remembered_absent))


def test_queued_events_arrive_as_one_run_per_cell_with_its_history_status_and_figure(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    experiment = experiment_id(client, "writer")
    parent = create_parent(client, experiment, "sweep", {}, {})
    writer = MlflowWriter(MlflowTarget(uri, experiment, parent), {})
    writer.start_cell("cell_a", "beta=1", {"beta": "1"})
    for step in (10, 20, 30):
        writer.log_metrics("cell_a", step, 1000 + step, {"train/loss": 1.0 / step})
    writer.end_cell("cell_a", "diverged", "FINISHED")
    figure = tmp_path / "trials" / "cell_a.txt"
    figure.parent.mkdir()
    writer.log_artifact("cell_a", figure, None, make=partial(_write_marker, "drawn in the writer", figure))
    writer.flush()

    run_id = writer.run_ids["cell_a"]  # reported back by the writer process
    run = client.get_run(run_id)
    assert run.data.params == {"beta": "1"} and run.info.status == "FINISHED"
    assert run.data.tags[STATUS_TAG] == "diverged" and run.data.tags["mlflow.parentRunId"] == parent
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "train/loss")] == \
        [(10, 0.1), (20, 0.05), (30, 1.0 / 30)]
    assert figure.read_text() == "drawn in the writer"
    assert [a.path for a in client.list_artifacts(run_id)] == ["cell_a.txt"]
    assert writer.close() is True


def test_a_writer_starts_with_mlflows_stores_already_imported(tmp_path):
    # importing them took ~0.8 s of CPU in every sweep's writer; its forkserver imports them once per driver. A
    # writer without MLflow never needs a store itself, so finding them loaded in it shows they came preloaded;
    # and it knows already that Databricks' runtime is absent (tracking/writer_preload.py)
    marker = tmp_path / "stores.txt"
    writer = MlflowWriter(None, {})
    writer.log_artifact(None, marker, None, make=partial(_write_loaded_stores, marker))
    writer.flush()
    assert writer.close() is True
    assert marker.read_text().split() == [*MLFLOW_STORES, "dbruntime"]


def test_the_writer_process_ends_when_the_driver_is_killed(tmp_path):
    driver = textwrap.dedent("""
        import sys, time
        from tracking.writer import MlflowWriter
        writer = MlflowWriter(None, {})
        print(writer._process.pid, flush=True)
        time.sleep(60)
    """)
    process = subprocess.Popen([sys.executable, "-c", driver], stdout=subprocess.PIPE, text=True,
                               cwd=Path(__file__).parents[2])
    try:
        writer_pid = int(process.stdout.readline())
        assert _running(writer_pid)  # alive while the driver is
    finally:  # pass or fail, the driver this test started ends here
        process.send_signal(signal.SIGKILL)
        process.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if not _running(writer_pid):
            return
        time.sleep(0.2)
    os.kill(writer_pid, signal.SIGKILL)
    raise AssertionError("the writer process outlived its driver")


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit is only reaped if this container's init does it)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


def test_a_driver_script_without_a_main_guard_runs_once(tmp_path):
    # multiprocessing's forkserver and spawn re-run the parent's main script in every child unless it is guarded by
    # `if __name__ == "__main__"`; a sweep started at a script's top level must not be started again by its writer
    marker = tmp_path / "runs.txt"
    script = tmp_path / "unguarded_sweep.py"
    script.write_text(textwrap.dedent(f"""
        from pathlib import Path
        from tracking.writer import MlflowWriter, start_writer_server
        with open({str(marker)!r}, "a") as runs:
            runs.write("ran\\n")
        start_writer_server()  # the forkserver, started ahead of the writer as run_sweep does
        writer = MlflowWriter(None, {{}})
        writer.flush(timeout_s=30)
        assert writer.close() is True
    """))
    finished = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                              cwd=Path(__file__).parents[2])
    assert finished.returncode == 0, finished.stderr
    assert marker.read_text() == "ran\n", finished.stderr


def test_the_writer_remembers_which_platform_modules_are_absent_and_leaves_installed_ones_alone():
    # MLflow's client tries to import Databricks' and Spark's modules before every request; remembering that they
    # are absent makes each try fail at once instead of searching sys.path again
    script = textwrap.dedent("""
        import sys
        from tracking.writer_preload import remember_absent_platform_modules
        marked = remember_absent_platform_modules(("wave", "priorsweep_no_such_platform"))
        assert marked == ["priorsweep_no_such_platform"], marked
        assert sys.modules["priorsweep_no_such_platform"] is None
        import wave  # installed: still imports
        # both refusals come from the None entry, without a search of sys.path
        for statement, refusal in (("import priorsweep_no_such_platform", "None in sys.modules"),
                                   ("from priorsweep_no_such_platform.context import get_context",
                                    "'priorsweep_no_such_platform' is not a package")):
            try:
                exec(statement)
            except ModuleNotFoundError as error:
                assert refusal in str(error), error
            else:
                raise AssertionError("an absent module imported")
        from mlflow.utils import databricks_utils
        assert not databricks_utils.is_in_databricks_notebook() and not databricks_utils.is_in_cluster()
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=Path(__file__).parents[2])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
