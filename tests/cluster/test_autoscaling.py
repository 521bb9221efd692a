"""Autoscaling with Ray's fake multi-node provider (`provider: fake_multinode`, RAY_FAKE_CLUSTER=1): a sweep that
asks for more than the nodes that are up says what it waits for, the autoscaler starts worker nodes for it, and
removes them once the sweep has ended."""

import pytest
import yaml

from tests.cluster.sweep_driver import results_table, start_sweep, stop_driver

pytestmark = [pytest.mark.integration, pytest.mark.slow]
WORKER_TYPE = "ray.worker.cpu"


def fake_cluster_config(gcs_address: str) -> dict:
    return {
        "cluster_name": "fake-autoscaling",
        "max_workers": 2,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 0.1,  # 6 s: idle workers go soon after the sweep
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True, "gcs_address": gcs_address},
        "auth": {"ssh_user": "ray"},
        "head_node_type": "ray.head.default",
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            WORKER_TYPE: {"resources": {"CPU": 2}, "node_config": {}, "min_workers": 0, "max_workers": 2},
        },
        "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
    }


@pytest.mark.timeout(540)
def test_the_autoscaler_starts_workers_for_a_sweep_and_removes_them_after(ray_cluster, tmp_path):
    config = tmp_path / "autoscaling.yaml"
    config.write_text(yaml.safe_dump(fake_cluster_config(ray_cluster.address)))
    ray_cluster.start_head(num_cpus=0, env_extra={"RAY_FAKE_CLUSTER": "1"},
                           extra_args=("--autoscaling-config", str(config)))
    head_id = ray_cluster.wait_for_nodes(1)["head"]

    args = ["--preset", "smoke", "--name", "autoscaled", "--address", ray_cluster.address, "--population-size", "1",
            "--steps", "1000", "--storage", str(tmp_path / "tune"), "--out", str(tmp_path / "results"),
            "--mlflow-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    driver = start_sweep("bias_grid.py", args, ray_cluster.env(), tmp_path, tmp_path / "driver.log")
    try:
        assert driver.wait(timeout=400) == 0, (tmp_path / "driver.log").read_text()[-3000:]
    finally:
        stop_driver(driver)

    log = (tmp_path / "driver.log").read_text()
    assert "waiting for the autoscaler: each trial needs 1 CPU" in log and WORKER_TYPE in log
    table = results_table(tmp_path / "results", "bias_grid", "autoscaled")
    assert len(table) == 4 and (table["status"] == "completed").all()
    assert head_id not in set(table["node_id"])  # every trial ran on a node the autoscaler started
    # idle workers are terminated: the cluster shrinks back to its head
    ray_cluster.wait_for_nodes(1)
