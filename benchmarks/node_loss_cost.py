#!/usr/bin/env python
"""What losing a node costs a sweep: the same β × bias sweep on a head + 2 workers (real `ray start` processes on
this machine, storage on a shared directory), once undisturbed and once with a worker killed mid-sweep, side by side.

  .venv/bin/python benchmarks/node_loss_cost.py [--steps 6000] [--report-every 300] [--repeats 1]

Printed per pair: both wall times and their ratio; for each trial the lost node was running, the last step it
reported there, the checkpoint step its restart resumed from, and the work redone. A trial checkpoints at every
report, so the restart should resume from the last reported step: redone work is then only the part of an interval
that was in flight (< --report-every steps), never a reported interval.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/cluster's helpers start the cluster

from tests.cluster.ray_nodes import LocalRayCluster  # noqa: E402
from tests.cluster.sweep_driver import latest_trial_results, results_table, start_sweep, stop_driver  # noqa: E402


def reported_steps(experiment_dir: Path) -> dict[str, list[tuple[int, str]]]:
    """trial id -> [(step, node id)] of every result the trial persisted."""
    steps = {}
    for result_file in experiment_dir.glob("*/result.json"):
        for line in result_file.read_text().splitlines():
            if line.strip():
                result = json.loads(line)
                steps.setdefault(result["trial_id"], []).append((result["step"], result["node_id"]))
    return steps


def run_sweep(cluster, root: Path, name: str, steps: int, report_every: int, kill=None) -> float:
    args = ["--preset", "smoke", "--name", name, "--address", cluster.address, "--population-size", "1",
            "--steps", str(steps), "--report-every", str(report_every), "--max-failures", "3",
            "--storage", str(root / "shared" / "tune"), "--out", str(root / "shared" / "results"),
            "--mlflow-uri", f"sqlite:///{root}/mlflow.db"]
    start = time.perf_counter()
    driver = start_sweep("bias_grid.py", args, cluster.env(), root, root / f"{name}.log")
    try:
        if kill is not None:
            kill(root / "shared" / "tune" / name, driver)
        if driver.wait(timeout=1800) != 0:
            raise SystemExit(f"sweep {name} failed: {(root / f'{name}.log').read_text()[-2000:]}")
    finally:
        stop_driver(driver)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6000, help="steps per trial (default 6000)")
    parser.add_argument("--report-every", type=int, default=300, help="steps per report and checkpoint (300)")
    parser.add_argument("--repeats", type=int, default=1, help="pairs of sweeps (default 1)")
    args = parser.parse_args()
    if min(args.steps, args.report_every, args.repeats) < 1 or args.report_every * 3 > args.steps:
        print("error: --steps, --report-every and --repeats must be >= 1, and --steps >= 3 × --report-every",
              file=sys.stderr)
        return 2

    root = Path(tempfile.mkdtemp(prefix="node_loss_cost-"))
    cluster = LocalRayCluster(root / "cluster")
    rows = []
    try:
        cluster.start_head(num_cpus=0)
        cluster.add_worker("worker_a", num_cpus=2)
        for repeat in range(args.repeats):
            doomed = cluster.add_worker(f"worker_b{repeat}", num_cpus=2)
            nodes = cluster.wait_for_nodes(3)

            def kill_worker_b(experiment_dir, driver, doomed=doomed, doomed_id=nodes[f"worker_b{repeat}"]):
                while not any(r.get("node_id") == doomed_id and r.get("step", 0) >= 2 * args.report_every
                              for r in latest_trial_results(experiment_dir)):
                    if driver.poll() is not None:
                        raise SystemExit("the sweep ended before the node could be lost")
                    time.sleep(0.2)
                doomed.kill()

            undisturbed = run_sweep(cluster, root, f"steady-{repeat}", args.steps, args.report_every)
            lossy = run_sweep(cluster, root, f"lossy-{repeat}", args.steps, args.report_every, kill=kill_worker_b)
            table = results_table(root / "shared" / "results", "bias_grid", f"lossy-{repeat}")
            history = reported_steps(root / "shared" / "tune" / f"lossy-{repeat}")
            lost_id = nodes[f"worker_b{repeat}"]
            for trial_id, reports in sorted(history.items()):
                on_lost = [step for step, node in reports if node == lost_id]
                if not on_lost or max(on_lost) == args.steps:
                    continue  # not running on the lost node when it died
                resumed = int(table.set_index("trial_id").loc[trial_id, "resumed_at_step"])
                rows.append((repeat, undisturbed, lossy, trial_id, max(on_lost), resumed))
            ok = len(table) == 4 and table["trial_id"].is_unique and (table["status"] == "completed").all()
            print(f"pair {repeat}: undisturbed {undisturbed:.1f} s, node lost {lossy:.1f} s "
                  f"({lossy / undisturbed:.2f}×); every cell once and completed: {ok}", flush=True)
    finally:
        cluster.shutdown()

    print("\n| pair | undisturbed (s) | node lost (s) | ratio | trial | last step on the lost node | resumed at "
          "| reported steps redone |")
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    for repeat, undisturbed, lossy, trial_id, last, resumed in rows:
        print(f"| {repeat} | {undisturbed:.1f} | {lossy:.1f} | {lossy / undisturbed:.2f} | {trial_id} | {last} | "
              f"{resumed} | {last - resumed} |")
    print(f"\nreport interval: {args.report_every} steps; command: {' '.join(sys.argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
