#!/usr/bin/env python
"""Orchestration efficiency on a multi-node Ray cluster: priorsweep's runner against a stock Ray Tune setup, side by
side in one run, on the same cluster of real `ray start` processes on this machine.

  .venv/bin/python benchmarks/cluster_overhead.py [--trials 1000] [--reports 10] [--interval 0.2] [--workers 3]
                                                  [--cpus-per-worker 4] [--repeats 1] [--out DIR]

The cluster (tests/cluster/ray_nodes.LocalRayCluster): a head with 0 CPUs that only schedules, and --workers worker
nodes of --cpus-per-worker logical CPUs each. This process is the driver of both setups: it joins the cluster once
with `ray.init(address=…)`. Every trial sleeps --interval seconds and then reports, --reports times (10 × 0.2 s ≈
2 s that use no CPU); one CPU per trial, so the cluster has workers × cpus-per-worker trial slots, and

  efficiency = ideal wall time / measured wall time of `Tuner.fit`,  ideal = trials × reports × interval / slots.

The two setups, the same trials (param space {reports, interval, index: grid_search(range(trials))}), the same
trainable (`sleeping_trainable` below: {"train/loss": …, "step": i} per report), the same shared storage directory:
(a) priorsweep: `sweeps.runner.run_sweep` with SweepSettings(address=the cluster, storage=the shared directory,
    mlflow_uri=a SQLite file), closed with `finish_sweep` as a study script does. So: reuse_actors=True,
    FailureConfig(max_failures=2), CheckpointConfig(num_to_keep=1), verbose=0, resources {"cpu": 1, "gpu": 0}, and
    its callbacks: the tracking (journal, one parent run and one child run per trial, written in batches by a
    background writer process), the results table (a line per finished trial), progress lines, the interrupt watch.
    Only namespaced metrics reach MLflow (here train/loss, 1 value per result), with step = the result's "step".
(b) stock Ray Tune: `tune.Tuner(sleeping_trainable, param_space, tune_config=TuneConfig(), run_config=RunConfig(
    name, storage_path, callbacks=[MLflowLoggerCallback(tracking_uri=a SQLite file, experiment_name=STUDY)]))`,
    everything else at Tune's defaults. The callback's experiment name is the one setting beyond the URI: it has no
    usable default (without a name, and with MLFLOW_EXPERIMENT_NAME/ID unset, its `setup` raises ValueError). So:
    reuse_actors=False (TuneConfig's default in Ray 2.60, for function trainables as well: a new actor, i.e. a new
    worker process, per trial), max_failures=0, 1 CPU per trial (a function trainable's default), Tune's default
    console output (AirVerbosity.VERBOSE), and the callback's defaults: a run per trial (no parent run), every
    numeric key of every result logged (train/loss, step, time_*, timestamp, pid, …, ~15 values per result, one
    request each, on the driver's loop), step = training_iteration.
Common to both, so no difference: Tune's automatic CSV/JSON/TensorBoard loggers stay on
(TUNE_DISABLE_AUTO_CALLBACK_LOGGERS is not set; neither does benchmarks/tracking_overhead.py), and
TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S=0, which importing sweeps.runner sets for the whole
process (it only silences a warning). Each sweep gets a SQLite file of its own, whose schema is created before its
timing starts (MLflow's migrations, ~1 s, would otherwise fall inside (b)'s `fit` and outside (a)'s).

Measured per sweep: the wall time of `Tuner.fit` (timed by wrapping `Tuner.fit`; the efficiency and results/s come
from it), and the wall time until every result is in MLflow: for (a) from `run_sweep` to the end of `finish_sweep`
(creating the parent run, starting the writer, and after `fit` draining the writer, the results table and report,
closing the parent run), for (b) from building the Tuner to the end of `fit` (Ray's callback writes synchronously).
Then the train/loss points in each sweep's SQLite file are counted against trials × reports. An unrecorded warm-up
first (a stock Tuner of one 1-report trial per slot, no tracking, and the start of the writer's forkserver, which
a driver pays once) so that neither setup pays the cluster's or the driver's first use. With --repeats > 1 the
order alternates, (a) (b), (b) (a), …. Each sweep's console output goes to a log file under --out (kept only when
--out is given); the final Markdown table is for benchmarks/RESULTS.md.
"""
import argparse
import contextlib
import logging
import os
import shlex
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.cluster (not an installed package) and the project where it is not installed

EXIT_BAD_INPUT = 2
STUDY = "cluster_overhead"
METRIC = "train/loss"  # the key whose MLflow points are counted
SETUPS = {"ours": "(a) priorsweep run_sweep", "stock": "(b) stock Tune + MLflowLoggerCallback"}


def sleeping_trainable(config: dict) -> None:
    """Reports `reports` results, `interval` seconds apart, using no CPU in between."""
    from ray import tune

    for step in range(1, config["reports"] + 1):
        time.sleep(config["interval"])
        tune.report({"train/loss": 1.0 / step, "step": step})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=1000, help="trials per sweep (default 1000)")
    parser.add_argument("--reports", type=int, default=10, help="results each trial reports (default 10)")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds of sleep before each report (default 0.2)")
    parser.add_argument("--workers", type=int, default=3, help="worker nodes besides the 0-CPU head (default 3)")
    parser.add_argument("--cpus-per-worker", type=int, default=4, help="logical CPUs per worker node (default 4)")
    parser.add_argument("--repeats", type=int, default=1, help="sweeps per setup, in alternating order (default 1)")
    parser.add_argument("--setups", nargs="+", choices=("ours", "stock"), default=["ours", "stock"],
                        help="which setups to run (default both, side by side; 'ours' alone measures the runner's "
                             "efficiency without the stock setup's ~35 min)")
    parser.add_argument("--out", type=Path, help="where the cluster's logs, storage, MLflow files and sweep logs go "
                        "(kept); default: a temporary directory, removed at the end")
    return parser


def check_args(args) -> str | None:
    for flag in ("trials", "reports", "workers", "cpus_per_worker", "repeats"):
        if getattr(args, flag) < 1:
            return f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}"
    if not args.interval > 0:
        return f"--interval must be more than 0 seconds, got {args.interval:g}"
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        return f"--out {args.out} exists and is not a directory"
    return None


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{model}, {os.cpu_count()} cores ({usable} usable by this process); load average at start {load}"


def command_line() -> str:
    python = Path(sys.executable)
    with contextlib.suppress(ValueError):
        python = python.relative_to(Path.cwd())
    return shlex.join([str(python), *sys.argv])


@contextlib.contextmanager
def timed_fit(tuner_class):
    """Wall time of every `Tuner.fit` inside the block, appended to the yielded list (run_sweep builds and fits its
    Tuner itself, so the method is wrapped for both setups alike)."""
    original, spans = tuner_class.fit, []

    def fit(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            spans.append(time.perf_counter() - start)

    tuner_class.fit = fit
    try:
        yield spans
    finally:
        tuner_class.fit = original


@contextlib.contextmanager
def output_to(log: Path):
    """The sweep's console output into `log`, at the file-descriptor level: Tune's and the runner's lines, Ray's
    forwarded worker lines and the warnings of loggers whose handlers hold the original stderr."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(log, "w") as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)


def create_schema(uri: str) -> None:
    """MLflow's tables in a new SQLite file, without its two INFO lines about it."""
    from mlflow.tracking import MlflowClient

    migrations = logging.getLogger("mlflow.store.db.utils")
    level = migrations.level
    migrations.setLevel(logging.WARNING)
    try:
        MlflowClient(tracking_uri=uri).search_experiments()
    finally:
        migrations.setLevel(level)


def count_points(db: Path, key: str) -> tuple[int, int, int]:
    """(points, runs with any, distinct (run, step) pairs) of metric `key` in a SQLite tracking file."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
        return connection.execute(
            "SELECT COUNT(*), COUNT(DISTINCT run_uuid), COUNT(DISTINCT run_uuid || ':' || step) FROM metrics "
            "WHERE key = ?", (key,)).fetchone()


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    problem = check_args(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    slots = args.workers * args.cpus_per_worker
    ideal = args.trials * args.reports * args.interval / slots
    expected = args.trials * args.reports
    started, host = time.perf_counter(), machine()
    print(f"machine: {host}\ncommand: {command_line()}", flush=True)

    if args.out is None:
        out, keep = Path(tempfile.mkdtemp(prefix="cluster_overhead-")), False
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out, keep = Path(tempfile.mkdtemp(prefix=f"run-{stamp}-", dir=args.out.resolve())), True
    for sub in ("shared/tune", "results", "mlflow", "logs"):
        (out / sub).mkdir(parents=True, exist_ok=True)

    from tests.cluster.ray_nodes import LocalRayCluster

    cluster = LocalRayCluster(out / "cluster")
    # the driver talks to the cluster as its nodes do: its own token file, no usage stats, no RAY_ADDRESS;
    # set before Ray is imported
    node_env = cluster.env()
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_USAGE_STATS_ENABLED"):
        os.environ[key] = node_env[key]
    os.environ.pop("RAY_ADDRESS", None)

    import ray
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    from sweeps.runner import finish_sweep, run_sweep
    from sweeps.settings import SweepSettings
    from tracking.writer import start_writer_server

    param_space = {"reports": args.reports, "interval": args.interval,
                   "index": tune.grid_search(list(range(args.trials)))}
    stamp = time.strftime("%Y%m%d-%H%M%S")

    def run_ours(repeat: int, uri: str) -> tuple[float, float, int]:
        settings = SweepSettings(study=STUDY, name=f"ours-r{repeat}-{stamp}", out_dir=out / "results" / f"r{repeat}",
                                 storage=str(out / "shared" / "tune"), address=cluster.address, mlflow_uri=uri)
        with timed_fit(tune.Tuner) as fits:
            start = time.perf_counter()
            frame, tracking = run_sweep(settings, sleeping_trainable, param_space, lambda c: f"trial {c['index']}",
                                        args.trials, {"trials": args.trials, "reports": args.reports,
                                                      "interval": args.interval})
            status = finish_sweep(frame, settings, tracking, ("results.parquet",))
            total = time.perf_counter() - start
        completed = int((frame["status"] == "completed").sum()) if len(frame) else 0
        return fits[0], total, args.trials - completed if status == 0 else max(1, args.trials - completed)

    def run_stock(repeat: int, uri: str) -> tuple[float, float, int]:
        with timed_fit(tune.Tuner) as fits:
            start = time.perf_counter()
            tuner = tune.Tuner(sleeping_trainable, param_space=param_space, tune_config=tune.TuneConfig(),
                               run_config=tune.RunConfig(name=f"stock-r{repeat}-{stamp}",
                                                         storage_path=str(out / "shared" / "tune"),
                                                         callbacks=[MLflowLoggerCallback(
                                                             tracking_uri=uri, experiment_name=STUDY)]))
            grid = tuner.fit()
            total = time.perf_counter() - start
        return fits[0], total, grid.num_errors

    runs = {"ours": run_ours, "stock": run_stock}
    measured: dict[str, list[dict]] = {"ours": [], "stock": []}
    status = 0
    try:
        print(f"starting the cluster: a 0-CPU head and {args.workers} workers × {args.cpus_per_worker} CPUs "
              f"({slots} trial slots) under {out}", flush=True)
        cluster.start_head(num_cpus=0)
        for index in range(args.workers):
            cluster.add_worker(f"worker_{index}", num_cpus=args.cpus_per_worker)
        ray.init(address=cluster.address, logging_level="WARNING")
        print(f"cluster up in {time.perf_counter() - started:.0f} s; warm-up", flush=True)
        warm = time.perf_counter()
        with output_to(out / "logs" / "warm-up.log"):
            start_writer_server()
            tune.Tuner(sleeping_trainable,
                       param_space={"reports": 1, "interval": 0.01, "index": tune.grid_search(list(range(slots)))},
                       run_config=tune.RunConfig(name=f"warm-up-{stamp}", storage_path=str(out / "shared" / "tune"),
                                                 verbose=0)).fit()
        print(f"warm-up {time.perf_counter() - warm:.0f} s", flush=True)

        for repeat in range(args.repeats):
            order = ("ours", "stock") if repeat % 2 == 0 else ("stock", "ours")
            for setup in (s for s in order if s in args.setups):
                db = out / "mlflow" / f"{setup}-r{repeat}.db"
                uri = f"sqlite:///{db}"
                create_schema(uri)
                log = out / "logs" / f"{setup}-r{repeat}.log"
                print(f"repeat {repeat}: {SETUPS[setup]} ({args.trials} trials; output in {log.name})", flush=True)
                try:
                    with output_to(log):
                        fit, total, errors = runs[setup](repeat, uri)
                except BaseException:
                    print(f"{SETUPS[setup]} failed; the end of {log}:\n{log.read_text()[-3000:]}", file=sys.stderr)
                    raise
                points, runs_with, distinct = count_points(db, METRIC)
                row = {"fit": fit, "total": total, "errors": errors, "points": points, "runs": runs_with,
                       "distinct": distinct}
                measured[setup].append(row)
                complete = points == expected and distinct == expected and runs_with == args.trials and not errors
                status = status or (0 if complete else 1)
                print(f"  fit {fit:.1f} s (ideal {ideal:.1f} s, efficiency {ideal / fit:.1%}), "
                      f"{expected / fit:.1f} results/s; until every result in MLflow {total:.1f} s; "
                      f"MLflow {METRIC} points: expected {expected}, found {points} in {runs_with} runs "
                      f"({distinct} distinct run/step){'' if not errors else f'; {errors} trials not completed'}"
                      f"{'' if complete else '  <-- INCOMPLETE'}", flush=True)
        ray.shutdown()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()
        cluster.shutdown()
        if not keep:
            shutil.rmtree(out, ignore_errors=True)

    print_table(args, measured, slots, ideal, expected)
    print(f"\nmachine: {host}\ncommand: `{command_line()}`\nbenchmark wall time "
          f"{time.perf_counter() - started:.0f} s{f'; files kept in {out}' if keep else ''}")
    return status


def print_table(args, measured: dict, slots: int, ideal: float, expected: int) -> None:
    def cell(setup: str, value, fmt: str) -> str:
        """The median of value(row) over the repeats, and each repeat's in brackets when there are several."""
        values = [value(row) for row in measured[setup]]
        text = format(statistics.median(values), fmt)
        return text if len(values) == 1 else f"{text} ({', '.join(format(v, fmt) for v in values)})"

    print(f"\n{args.trials} trials × {args.reports} results, {args.interval:g} s apart (sleep), 1 CPU per trial; "
          f"a 0-CPU head + {args.workers} worker nodes × {args.cpus_per_worker} CPUs = {slots} slots; ideal wall "
          f"time {ideal:.1f} s; {args.repeats} repeat(s){', median (each repeat)' if args.repeats > 1 else ''}\n")
    print(f"| setup | `Tuner.fit` wall time, s | efficiency | results/s | until every result in MLflow, s | "
          f"MLflow `{METRIC}` points, expected / found |")
    print("|---|---:|---:|---:|---:|---:|")
    for setup, label in SETUPS.items():
        if not measured[setup]:
            continue
        found = ", ".join(str(row["points"]) for row in measured[setup])
        print(f"| {label} | {cell(setup, lambda r: r['fit'], '.1f')} | "
              f"{cell(setup, lambda r: ideal / r['fit'], '.1%')} | {cell(setup, lambda r: expected / r['fit'], '.1f')} "
              f"| {cell(setup, lambda r: r['total'], '.1f')} | {expected} / {found} |")
    if not (measured["ours"] and measured["stock"]):
        return
    ratios = [b["fit"] / a["fit"] for a, b in zip(measured["ours"], measured["stock"], strict=True)]
    print(f"\nthroughput (a)/(b): {statistics.median(ratios):.2f}×"
          f"{'' if len(ratios) == 1 else ' (per repeat: ' + ', '.join(f'{r:.2f}' for r in ratios) + ')'}")


if __name__ == "__main__":
    sys.exit(main())
