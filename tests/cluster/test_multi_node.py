"""Sweeps across several Ray nodes (real `ray start` processes on this machine, storage on a shared directory as
NFS would be): trials spread over the nodes by their resources, and a node lost mid-sweep loses nothing."""
import time

import pytest
from mlflow.tracking import MlflowClient

from tests.cluster.sweep_driver import child_runs, latest_trial_results, results_table, start_sweep, stop_driver

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def sweep_args(tmp_path, cluster, name: str, *extra: str) -> list[str]:
    return ["--preset", "smoke", "--name", name, "--address", cluster.address, "--population-size", "1",
            "--storage", str(tmp_path / "shared" / "tune"), "--out", str(tmp_path / "shared" / "results"),
            "--mlflow-uri", f"sqlite:///{tmp_path}/mlflow.db", "--progress-every", "0", *extra]


@pytest.mark.timeout(420)
def test_trials_spread_over_worker_nodes_and_record_where_they_ran(ray_cluster, tmp_path):
    ray_cluster.start_head(num_cpus=0)  # the head schedules, the workers train
    ray_cluster.add_worker("worker_a", num_cpus=1)
    ray_cluster.add_worker("worker_b", num_cpus=1)
    nodes = ray_cluster.wait_for_nodes(3)
    driver = start_sweep("bias_grid.py", sweep_args(tmp_path, ray_cluster, "spread", "--steps", "1000"),
                         ray_cluster.env(), tmp_path, tmp_path / "driver.log")
    try:
        assert driver.wait(timeout=300) == 0, (tmp_path / "driver.log").read_text()[-3000:]
    finally:
        stop_driver(driver)

    table = results_table(tmp_path / "shared" / "results", "bias_grid", "spread")
    assert len(table) == 4 and table["trial_id"].is_unique and (table["status"] == "completed").all()
    assert set(table["node_id"]) == {nodes["worker_a"], nodes["worker_b"]}  # both workers trained, the head none
    _, children = child_runs(f"sqlite:///{tmp_path}/mlflow.db", "bias_grid", "spread")
    recorded = {c.data.tags["priorsweep.trial_id"]: c.data.tags["priorsweep.node_id"] for c in children}
    assert recorded == dict(zip(table["trial_id"], table["node_id"], strict=True))


@pytest.mark.timeout(600)
def test_a_lost_node_loses_no_result_and_its_trials_resume_from_checkpoints(ray_cluster, tmp_path):
    ray_cluster.start_head(num_cpus=0)
    ray_cluster.add_worker("worker_a", num_cpus=2)
    doomed = ray_cluster.add_worker("worker_b", num_cpus=2)
    nodes = ray_cluster.wait_for_nodes(3)
    report_every = 300
    driver = start_sweep("bias_grid.py", sweep_args(tmp_path, ray_cluster, "node-loss", "--steps", "6000",
                                                    "--report-every", str(report_every), "--max-failures", "3"),
                         ray_cluster.env(), tmp_path, tmp_path / "driver.log")
    try:
        # kill worker_b once a trial there has checkpointed twice: it then has work to lose and a checkpoint to keep
        experiment_dir = tmp_path / "shared" / "tune" / "node-loss"
        deadline = time.time() + 240
        while not any(r.get("node_id") == nodes["worker_b"] and r.get("step", 0) >= 2 * report_every
                      and r.get("status") == "running" for r in latest_trial_results(experiment_dir)):
            assert driver.poll() is None and time.time() < deadline, (tmp_path / "driver.log").read_text()[-3000:]
            time.sleep(0.5)
        doomed.kill()
        assert driver.wait(timeout=400) == 0, (tmp_path / "driver.log").read_text()[-3000:]
    finally:
        stop_driver(driver)

    table = results_table(tmp_path / "shared" / "results", "bias_grid", "node-loss")
    assert len(table) == 4 and table["trial_id"].is_unique and (table["status"] == "completed").all()
    assert (table["step"] == 6000).all()
    # the lost node's trials finished on the survivor, continuing from a checkpoint rather than from step 0
    resumed = table[table["resumed_at_step"] > 0]
    assert len(resumed) >= 1 and set(resumed["node_id"]) == {nodes["worker_a"]}
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    _, children = child_runs(uri, "bias_grid", "node-loss")
    assert sorted(c.data.tags["priorsweep.trial_id"] for c in children) == sorted(table["trial_id"])
    client = MlflowClient(tracking_uri=uri)
    for child in children:  # one history per cell: every report once, none redone after the restart
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "train/loss")]
        assert steps == sorted(set(steps)) and steps[-1] == 6000, steps
