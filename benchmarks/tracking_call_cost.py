#!/usr/bin/env python
"""CPU that one trial's MLflow writes cost, against a local `mlflow server` with a PostgreSQL backend, and what two
choices of priorsweep save on it, each compared side by side in one run (alternating, so drift hits both sides):

  server  the server reaching PostgreSQL through psycopg2 (devtools/tracking_server.py) vs psycopg 3 (SQLAlchemy
          2.1's default driver for postgresql://): CPU of the server's processes and of PostgreSQL per trial
  client  the writer's MlflowClient with the platform modules MLflow probes before every request remembered as
          absent (tracking/writer_preload.py) vs probed by import each time: CPU of this process per trial

A trial's writes are what the writer sends for a short trial of benchmarks/tracking_overhead.py: `create_run` (with
the child's tags), one `log_batch` (125 metrics: 25 steps of 5, two params, the status tag), `set_terminated`.

  .venv/bin/python benchmarks/tracking_call_cost.py [--trials 80] [--repeats 3]
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # devtools (a helper of the repository, not installed)

from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from devtools.tracking_server import MlflowServer, PostgresServer  # noqa: E402
from tracking.run_layout import STATUS_TAG, create_child, create_parent, experiment_id  # noqa: E402
from tracking.writer_preload import PLATFORM_PROBES, remember_absent_platform_modules  # noqa: E402

METRIC_KEYS = ("train/loss", "train/kl", "val/neg_elbo", "val/kl", "train/steps_per_second")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(matches) -> float:
    """User + system CPU of every process whose command line satisfies `matches`."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if matches(command):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
        except OSError:  # the process ended meanwhile
            continue
    return total


def is_server(command: str) -> bool:
    return "mlflow server" in command or "gunicorn" in command


def is_postgres(command: str) -> bool:
    return command.startswith("postgres")


def one_trial(client: MlflowClient, experiment: str, parent: str, index: int) -> None:
    run_id = create_child(client, experiment, parent, f"cell{index}", f"trial {index}")
    metrics = [Metric(key, 1.0 / step, 0, step) for step in range(1, 26) for key in METRIC_KEYS]
    client.log_batch(run_id, metrics=metrics, params=[Param("beta", "4"), Param("bias", "0.5")],
                     tags=[RunTag(STATUS_TAG, "completed")])
    client.set_terminated(run_id, "FINISHED")


def measure(server: MlflowServer, trials: int, label: str) -> tuple[float, float, float]:
    """Milliseconds of CPU per trial: (server, PostgreSQL, this process as the client)."""
    client = MlflowClient(tracking_uri=server.uri)
    experiment = experiment_id(client, "tracking_call_cost")
    parent = create_parent(client, experiment, f"{label}-{time.monotonic_ns()}", {}, {})
    for index in range(3):  # warm: connections, caches
        one_trial(client, experiment, parent, index)
    server_0, postgres_0, client_0 = cpu_seconds(is_server), cpu_seconds(is_postgres), time.process_time()
    for index in range(trials):
        one_trial(client, experiment, parent, index)
    return tuple(1000 * (after - before) / trials for before, after in (
        (server_0, cpu_seconds(is_server)), (postgres_0, cpu_seconds(is_postgres)),
        (client_0, time.process_time())))


def forget_absent_platform_modules() -> None:
    for name in PLATFORM_PROBES:
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=80, help="trials measured per configuration and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.trials < 1 or args.repeats < 1:
        parser.error("--trials and --repeats must be at least 1")
    rows: dict[str, list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        postgres = PostgresServer(Path(scratch) / "postgres").start()
        try:
            for repeat in range(args.repeats):
                drivers = ("psycopg2", "psycopg") if repeat % 2 == 0 else ("psycopg", "psycopg2")
                for driver in drivers:
                    server = MlflowServer(postgres.uri_with_driver(driver), Path(scratch) / f"artifacts-{driver}",
                                          log=Path(scratch) / "mlflow-server.log").start()
                    try:
                        probes = (True, False) if repeat % 2 == 0 else (False, True)
                        for remembered in probes:
                            if remembered:
                                remember_absent_platform_modules()
                            else:
                                forget_absent_platform_modules()
                            key = f"{driver}, platform probes {'remembered' if remembered else 'imported'}"
                            rows.setdefault(key, []).append(measure(server, args.trials, key))
                            server_ms, postgres_ms, client_ms = rows[key][-1]
                            print(f"  repeat {repeat}: {key:45s} server {server_ms:5.1f}  PostgreSQL "
                                  f"{postgres_ms:5.1f}  client {client_ms:5.1f} ms/trial", file=sys.stderr, flush=True)
                    finally:
                        server.stop()
        finally:
            postgres.stop(remove=True)
    print(f"\nCPU per trial (create_run, log_batch of 125 metrics + 2 params + 1 tag, set_terminated), ms; median of "
          f"{args.repeats} repeats of {args.trials} trials\n")
    print("| server's PostgreSQL driver, writer's platform probes | server | PostgreSQL | client (writer) |")
    print("|---|---:|---:|---:|")
    for key, values in rows.items():
        medians = [statistics.median(column) for column in zip(*values, strict=True)]
        print(f"| {key} | {medians[0]:.1f} | {medians[1]:.1f} | {medians[2]:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
