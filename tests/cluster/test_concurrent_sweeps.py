"""Several users at once: four sweeps of both studies, started together against one Ray cluster and one `mlflow
server` on PostgreSQL, each land every cell exactly once in their own results table and under their own parent run;
nothing of one appears in another."""
import time

import pytest

from devtools.tracking_server import tracking_server
from tests.cluster.sweep_driver import child_runs, results_table, start_sweep, stop_driver

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SWEEPS = [  # (script, study, name, cells)
    ("bias_grid.py", "bias_grid", "alice", 4),
    ("bias_grid.py", "bias_grid", "bob", 4),
    ("introvae_prior.py", "introvae", "carol", 2),
    ("introvae_prior.py", "introvae", "dave", 2),
]


def test_four_sweeps_at_once_share_a_cluster_and_a_tracking_server_without_cross_talk(ray_cluster, tmp_path):
    ray_cluster.start_head(num_cpus=2)
    out = tmp_path / "results"
    with tracking_server(tmp_path / "mlflow") as server:
        drivers = []
        try:
            for script, _, name, _ in SWEEPS:  # all four started before any has finished
                drivers.append(start_sweep(script, ["--preset", "smoke", "--name", name, "--out", str(out),
                                                    "--address", ray_cluster.address, "--mlflow-uri", server.uri,
                                                    "--progress-every", "0"],
                                           ray_cluster.env(), tmp_path, tmp_path / f"{name}.log"))
            deadline = time.time() + 480
            while any(d.poll() is None for d in drivers) and time.time() < deadline:
                time.sleep(1)
            logs = {name: (tmp_path / f"{name}.log").read_text()[-2000:] for _, _, name, _ in SWEEPS}
            assert [d.returncode for d in drivers] == [0, 0, 0, 0], logs
        finally:
            for driver in drivers:
                stop_driver(driver)

        trial_ids: dict[str, set] = {}
        for _, study, name, cells in SWEEPS:
            table = results_table(out, study, name)
            assert len(table) == cells and table["trial_id"].is_unique, name
            assert (table["sweep"] == name).all() and (table["study"] == study).all()
            assert (table["status"] == "completed").all()
            parent, children = child_runs(server.uri, study, name)
            assert parent.info.status == "FINISHED"
            # every cell once under its own parent: the table's run ids are exactly this parent's children
            assert sorted(c.info.run_id for c in children) == sorted(table["mlflow_run_id"]), name
            assert sorted(c.data.tags["priorsweep.trial_id"] for c in children) == sorted(table["trial_id"])
            trial_ids[name] = set(table["trial_id"])
        every = [trial for ids in trial_ids.values() for trial in ids]
        assert len(every) == len(set(every))  # no cell id shared between sweeps
