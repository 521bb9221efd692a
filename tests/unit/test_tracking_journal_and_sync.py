"""The tracking journal and `sync` against a real MLflow (SQLite file): replay adds exactly what is missing."""
import json

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from tracking.journal import JOURNAL_FILE, JournalWriter, RecordedFronts, read_journal
from tracking.run_layout import STATUS_TAG, child_runs, create_child, create_parent, experiment_id
from tracking.sweep_record import write_sweep_record
from tracking.sync import sync_sweep


def write_sweep(directory, cells=("c0", "c1"), steps=(10, 20, 30)):
    journal = JournalWriter(directory / JOURNAL_FILE)
    for cell in cells:
        journal.start(cell, f"run {cell}", {"beta": "1.0", "cell": cell})
        for step in steps:
            journal.metrics(cell, step, 1000 + step, {"train/loss": 1.0 / step, "val/kl": float(step)})
        journal.end(cell, "completed", "FINISHED")
    (directory / "figure.png").write_bytes(b"\x89PNG fake but a file")
    journal.artifact(None, "figure.png")
    journal.close()
    write_sweep_record(directory, {"study": "study", "name": "sweep", "params": {"preset": "smoke"},
                                   "parent_tags": {"priorsweep.study": "study"}, "status": "FINISHED"})


def test_journal_folds_events_last_value_wins_and_a_cut_line_ends_it(tmp_path):
    journal = JournalWriter(tmp_path / JOURNAL_FILE)
    journal.start("a", "run a", {"beta": "1"})
    journal.metrics("a", 5, 1, {"train/loss": 2.0})
    journal.metrics("a", 5, 2, {"train/loss": 3.0, "val/kl": float("nan")})  # a restarted trial repeats step 5
    journal.end("a", "diverged", "FINISHED")
    journal.close()
    with open(tmp_path / JOURNAL_FILE, "a") as file:
        file.write('{"event": "metrics", "cell": "a", "st')  # the driver died mid-line
    record = read_journal(tmp_path / JOURNAL_FILE).cells["a"]
    assert record.metrics == {"train/loss": {5: (3.0, 2)}}  # NaN is not a metric point
    assert (record.status, record.run_status, record.params) == ("diverged", "FINISHED", {"beta": "1"})


def test_a_resumed_sweep_appends_after_the_cut_line_and_knows_which_points_it_holds(tmp_path):
    path = tmp_path / JOURNAL_FILE
    journal = JournalWriter(path)
    journal.metrics("a", 100, 1, {"train/loss": 2.0, "val/kl": 0.5})
    journal.close()
    with open(path, "a") as file:
        file.write('{"event": "metrics", "cell": "a", "st')  # the driver died mid-line
    resumed = JournalWriter(path)  # the resumed driver's journal: the cut event goes, whole lines stay
    resumed.metrics("a", 200, 2, {"train/loss": 1.0})
    resumed.close()
    assert read_journal(path).cells["a"].metrics == {"train/loss": {100: (2.0, 1), 200: (1.0, 2)},
                                                     "val/kl": {100: (0.5, 1)}}
    assert RecordedFronts.from_journal(path).fronts == {"a": (200, {"train/loss"})}


def test_a_restored_trial_reporting_its_steps_again_records_each_point_once():
    fronts = RecordedFronts({"a": (200, {"train/loss"})})  # recorded up to step 200 before the kill
    assert fronts.new_values("a", 100, {"train/loss": 9.0}) == {}  # replayed from the checkpoint at 100
    assert fronts.new_values("a", 200, {"train/loss": 9.0, "eval/kl": 0.5}) == {"eval/kl": 0.5}  # only what's new
    assert fronts.new_values("a", 200, {"eval/kl": 0.7}) == {}
    assert fronts.new_values("a", 300, {"train/loss": 1.0}) == {"train/loss": 1.0}  # ahead: recorded
    assert fronts.new_values("b", 100, {"train/loss": 2.0}) == {"train/loss": 2.0}  # cells are separate
    assert fronts.fronts == {"a": (300, {"train/loss"}), "b": (100, {"train/loss"})}  # one step per cell kept


def test_a_broken_line_inside_the_journal_is_one_error_line_saying_how_to_recover(tmp_path, capsys):
    from analysis.__main__ import main as analysis_main

    (tmp_path / JOURNAL_FILE).write_text('{"event": "start"\n' + json.dumps({"event": "end", "cell": "a"}) + "\n")
    with pytest.raises(ValueError, match=":1 is not a JSON line"):
        read_journal(tmp_path / JOURNAL_FILE)
    (tmp_path / "sweep.json").write_text(json.dumps({"study": "s", "name": "n"}))
    assert analysis_main(["sync", "--results", str(tmp_path), "--mlflow-uri", f"sqlite:///{tmp_path}/m.db"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "remove or repair that line" in error[0]


def test_sync_fills_an_empty_server_then_adds_nothing(tmp_path):
    write_sweep(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    first = sync_sweep(tmp_path, uri, progress=lambda _: None)
    assert (first.runs_created, first.params, first.metric_points, first.artifacts) == (3, 4, 12, 1)
    assert sync_sweep(tmp_path, uri).total == 0
    client = MlflowClient(tracking_uri=uri)
    experiment = experiment_id(client, "study")
    parent = client.search_runs([experiment], "tags.`priorsweep.sweep` = 'sweep'")[0]
    assert parent.info.status == "FINISHED" and parent.data.params == {"preset": "smoke"}
    runs = child_runs(client, experiment, parent.info.run_id)
    assert sorted(runs) == ["c0", "c1"]
    history = client.get_metric_history(runs["c0"], "train/loss")
    assert [(m.step, m.value) for m in history] == [(10, 0.1), (20, 0.05), (30, 1 / 30)]
    assert client.get_run(runs["c1"]).data.tags[STATUS_TAG] == "completed"
    assert [a.path for a in client.list_artifacts(parent.info.run_id)] == ["figure.png"]


def test_sync_adds_only_what_a_half_logged_sweep_lacks(tmp_path):
    """As after an outage: the parent and c0 exist with part of c0's history; c1 was never created."""
    write_sweep(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    experiment = experiment_id(client, "study")
    parent = create_parent(client, experiment, "sweep", {}, {"preset": "smoke"})
    c0 = create_child(client, experiment, parent, "c0", "run c0")
    client.log_batch(c0, metrics=[Metric("train/loss", 0.1, 1010, 10)])
    write_sweep_record(tmp_path, {**json.loads((tmp_path / "sweep.json").read_text()), "parent_run_id": parent})
    counts = sync_sweep(tmp_path, uri)
    assert counts.runs_created == 1 and counts.metric_points == 12 - 1
    assert [m.step for m in client.get_metric_history(c0, "train/loss")] == [10, 20, 30]
    assert len(child_runs(client, experiment, parent)) == 2


def test_sweeps_starting_together_share_one_experiment_instead_of_failing(tmp_path):
    """Eight clients create the same experiment at once on one database (four sweeps of a study started together
    found this on a real server): every one gets the same id, none fails."""
    import threading

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    MlflowClient(tracking_uri=uri).search_experiments()  # the schema first: its migration is not the race here
    start, ids, errors = threading.Barrier(8), [], []

    def create():
        client = MlflowClient(tracking_uri=uri)
        start.wait()
        try:
            ids.append(experiment_id(client, "study"))
        except Exception as error:  # noqa: BLE001 (collected, asserted below)
            errors.append(error)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(ids) == 8 and len(set(ids)) == 1
