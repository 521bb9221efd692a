#!/usr/bin/env python
"""Results per second of a sweep of many short trials with (a) no tracking, (b) Ray's MLflowLoggerCallback,
(c) priorsweep's tracking (journal + background batched writer, parent run, one child per trial), side by side in
one run, against one SQLite file and against a local `mlflow server` (PostgreSQL backend, started here).

  .venv/bin/python benchmarks/tracking_overhead.py [--trials 200] [--results-per-trial 25] [--repeats 6]

Every configuration runs the same Tune sweep (a trainable that only reports: 5 namespaced metrics per result) on
one local Ray with 2 CPUs; wall time covers Tuner.fit plus, for (c), creating the parent run and starting the writer
process before it and draining the writer and closing the parent run after it, so what a user waits for is counted.
(c) pays those once per sweep, and after the last result it also waits for what its low-priority writer has not
sent yet (0.15-0.35 s per sweep measured; printed as "per-sweep setup + close"), so a short sweep shows more of them:
with --trials 40 (the earlier default) a sweep runs ~5 s. (b) makes one request per metric and is 20-50x slower, so
it runs --ray-trials (default 40) trials; its results/s hardly depends on the count.
Unrecorded warm-up sweeps of (a), and of (c) against each tracking store, come first (Ray's workers, the writer's
forkserver, the first connection to each store); then each repeat runs (a), (c), (a) again back to back per
tracking store, and (b) in the first --ray-repeats. Prints Markdown for benchmarks/RESULTS.md: the best of each;
(c) over the mean of the two (a) beside it, per repeat, with its median (this VM's speed drifts by up to 2x within
minutes, so this is the figure to read); and the second (a) over the first, a comparison where nothing changed,
which shows how far noise alone moves such a ratio.

By default everything shares the machine's cores: the sweep, the writer, the tracking server and PostgreSQL. With
--sweep-cpus and --server-cpus (e.g. 0 and 1) the server and its PostgreSQL run on cores of their own, as on a cluster
where the tracking server has its own machine; the sweep's driver, Ray and priorsweep's writer keep the other cores
(Ray gets one CPU per sweep core).
"""
import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # devtools (a helper of the repository, not installed)

import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.air.integrations.mlflow import MLflowLoggerCallback  # noqa: E402

from devtools.tracking_server import tracking_server  # noqa: E402
from sweeps.settings import SweepSettings  # noqa: E402
from sweeps.sweep_session import SweepSession  # noqa: E402


def reporting_trainable(config: dict) -> None:
    for step in range(1, config["results"] + 1):
        tune.report({"train/loss": 1.0 / step, "train/kl": 0.5 / step, "val/neg_elbo": 2.0 / step,
                     "val/kl": 0.1 * step, "train/steps_per_second": 100.0, "step": step})


def cpu_list(text: str) -> set[int]:
    """'0' or '0,1' -> {0, 1}"""
    try:
        return {int(part) for part in text.split(",")}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected core numbers like 0 or 0,1, got {text!r}") from None


def run_once(mode: str, uri: str | None, root: Path, trials: int, results: int, label: str) -> tuple[float, float]:
    """Seconds for the whole sweep, and of them those (c) spends once per sweep: setting up tracking before
    Tuner.fit and closing it after."""
    name = f"{label}-{mode}-{time.monotonic_ns()}"
    callbacks, tracking = [], None
    start = time.perf_counter()
    if mode == "ray":
        callbacks.append(MLflowLoggerCallback(tracking_uri=uri, experiment_name="tracking_overhead_ray"))
    elif mode == "ours":
        settings = SweepSettings(study="tracking_overhead", name=name, out_dir=root / name,
                                 storage=str(root / "_tune"), mlflow_uri=uri)
        settings.out_dir.mkdir(parents=True)
        tracking = SweepSession(settings, lambda c: f"trial {c['index']}", (), {"trials": trials})
        callbacks.append(tracking.callback)
    setup = time.perf_counter() - start
    tuner = tune.Tuner(
        tune.with_resources(reporting_trainable, {"cpu": 1}),
        param_space={"results": results, "index": tune.grid_search(list(range(trials)))},
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=str(root / "_tune"), callbacks=callbacks, verbose=0),
    )
    tuner.fit()
    fitted = time.perf_counter()
    if tracking is not None:
        tracking.close("FINISHED")
    end = time.perf_counter()
    return end - start, setup + (end - fitted) if tracking is not None else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=200, help="trials per sweep of (a) and (c)")
    parser.add_argument("--ray-trials", type=int, default=40, help="trials per sweep of (b), Ray's callback")
    parser.add_argument("--results-per-trial", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=6, help="sweeps per configuration for (a) and (c)")
    parser.add_argument("--ray-repeats", type=int, default=1, help="sweeps per tracking store for (b)")
    parser.add_argument("--sweep-cpus", type=cpu_list, help="cores for the sweep (driver, Ray, writer), e.g. 0")
    parser.add_argument("--server-cpus", type=cpu_list, help="cores for the tracking server and PostgreSQL, e.g. 1")
    args = parser.parse_args()
    if min(args.trials, args.ray_trials, args.results_per_trial, args.repeats) < 1 or args.ray_repeats < 1:
        parser.error("--trials, --ray-trials, --results-per-trial, --repeats and --ray-repeats must be at least 1")
    if (args.sweep_cpus is None) != (args.server_cpus is None):
        parser.error("--sweep-cpus and --server-cpus go together")
    if args.sweep_cpus is not None:
        available = os.sched_getaffinity(0)
        if not (args.sweep_cpus | args.server_cpus) <= available or args.sweep_cpus & args.server_cpus:
            parser.error(f"--sweep-cpus and --server-cpus must be disjoint sets of this process's cores "
                         f"{sorted(available)}")
    rows = []
    with tempfile.TemporaryDirectory() as scratch, contextlib.ExitStack() as stack:
        if args.server_cpus is not None:  # the server and PostgreSQL inherit this affinity, nothing else does
            os.sched_setaffinity(0, args.server_cpus)
        server = stack.enter_context(tracking_server(Path(scratch) / "server"))
        if args.sweep_cpus is not None:  # then Ray, its workers and the writer's forkserver inherit this one
            os.sched_setaffinity(0, args.sweep_cpus)
        ray.init(num_cpus=len(args.sweep_cpus) if args.sweep_cpus else 2, include_dashboard=False,
                 log_to_driver=False)
        root = Path(scratch)
        backends = {"SQLite file": f"sqlite:///{root}/mlflow.db", "mlflow server (PostgreSQL)": server.uri}
        rates: dict[tuple[str, str], list[float]] = {}
        fixed: dict[str, list[float]] = {}  # tracking store -> (c)'s per-sweep setup + close, seconds
        # Ray's workers, the writer's forkserver (started once per driver), each store's first connection
        run_once("none", None, root, args.trials, args.results_per_trial, "warm-up")
        for uri in backends.values():
            run_once("ours", uri, root, args.trials, args.results_per_trial, "warm-up")
        for repeat in range(args.repeats):
            # (a), (c), (a) again: (c) is compared with the mean of the (a) on either side of it, which cancels a
            # machine that speeds up or slows down steadily; the two (a) compared with each other show the noise
            for backend, uri in backends.items():
                for mode in ("none", "ours", "none", "ray") if repeat < args.ray_repeats else ("none", "ours", "none"):
                    trials = args.ray_trials if mode == "ray" else args.trials
                    seconds, once = run_once(mode, uri, root, trials, args.results_per_trial, f"r{repeat}")
                    rate = trials * args.results_per_trial / seconds
                    rates.setdefault((backend, mode), []).append(rate)
                    if mode == "ours":
                        fixed.setdefault(backend, []).append(once)
                    print(f"  repeat {repeat}: {backend:28s} {mode:5s} {rate:8.1f} results/s",
                          file=sys.stderr, flush=True)
        for backend in backends:
            best = {mode: max(rates[(backend, mode)]) for mode in ("none", "ray", "ours")}
            before, after = rates[(backend, "none")][0::2], rates[(backend, "none")][1::2]
            paired = [ours / ((a + b) / 2) for a, b, ours in zip(before, after, rates[(backend, "ours")], strict=True)]
            same = [b / a for a, b in zip(before, after, strict=True)]
            rows.append(f"| {backend} | {best['none']:.0f} | {best['ray']:.0f} | {best['ours']:.0f} | "
                        f"{best['ours'] / best['none']:.2f} | {statistics.median(paired):.2f} "
                        f"({', '.join(f'{r:.2f}' for r in paired)}) | {statistics.median(same):.2f} "
                        f"({', '.join(f'{r:.2f}' for r in same)}) | {best['ours'] / best['ray']:.1f}× | "
                        f"{1000 * statistics.median(fixed[backend]):.0f} ms |")
        ray.shutdown()
    print(f"\n{args.trials} trials × {args.results_per_trial} results per sweep for (a) and (c), "
          f"{args.ray_trials} trials for (b); best of {2 * args.repeats} for (a), of {args.repeats} for (c), of "
          f"{args.ray_repeats} for (b)\n")
    layout = (f"sweep on cores {sorted(args.sweep_cpus)}, tracking server and PostgreSQL on {sorted(args.server_cpus)}"
              if args.sweep_cpus else "everything on the same cores")
    print(f"{layout}\n")
    print("| tracking store | (a) no tracking, results/s | (b) Ray MLflowLoggerCallback | (c) priorsweep | "
          "(c)/(a), best of each | (c)/(a) per repeat: median (all) | (a)/(a), no change: median (all) | "
          "(c)/(b) | (c)'s per-sweep setup + close, median |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
