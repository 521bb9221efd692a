#!/usr/bin/env python
"""Does a long sweep grow without bound? The driver's memory and the files a sweep writes, over a sweep of many
short trials.

  .venv/bin/python benchmarks/long_sweep_growth.py [--trials 1000] [--reports 10] [--interval 0.05] [--cpus 12]
                                                   [--every 2] [--out DIR]

One sweep through the runner a study script uses (`sweeps.runner.run_sweep`, then `finish_sweep`), on a local Ray
with --cpus logical CPUs (the trials sleep, so they need none really), MLflow on a SQLite file beside it: the
journal, one MLflow child run per trial written by the background writer, the results table rewritten as each trial
ends, Tune's experiment state and one checkpointless trial directory per trial. The trainable is
benchmarks/cluster_overhead.py's `sleeping_trainable` (--reports results, --interval seconds apart).

Every --every seconds a thread of the driver samples: trials finished (rows of results.parquet), the driver's
resident memory (VmRSS), and the sizes of the journal, the results table, Tune's storage folder and the MLflow
database. Printed as Markdown: the samples nearest 10/25/50/75/100 % of the trials, and the growth per trial over
the second half (what a sweep ten times longer would add per trial, once start-up costs are paid).
"""
import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STUDY = "long_sweep_growth"
MB = 1e6


def resident_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / MB
    return float("nan")


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


class Sampler(threading.Thread):
    """(seconds, trials finished, RSS MB, journal, table, Tune storage, MLflow database sizes in bytes) per tick."""

    def __init__(self, out_dir: Path, storage: Path, database: Path, every_s: float):
        super().__init__(daemon=True)
        self.out_dir, self.storage, self.database, self.every_s = out_dir, storage, database, every_s
        self.samples: list[tuple] = []
        self.stopped = threading.Event()

    def sample(self) -> None:
        from tracking.files import read_parquet

        table = self.out_dir / "results.parquet"
        try:
            finished = len(read_parquet(table)) if table.exists() else 0
        except Exception:  # between writes: the next tick counts it
            return
        sizes = [(self.out_dir / name).stat().st_size if (self.out_dir / name).exists() else 0
                 for name in ("tracking.jsonl", "results.parquet")]
        self.samples.append((time.perf_counter(), finished, resident_mb(), *sizes, folder_bytes(self.storage),
                             self.database.stat().st_size if self.database.exists() else 0))

    def run(self) -> None:
        while not self.stopped.wait(self.every_s):
            self.sample()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=1000, help="trials in the sweep (default 1000)")
    parser.add_argument("--reports", type=int, default=10, help="results each trial reports (default 10)")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between reports (default 0.05)")
    parser.add_argument("--cpus", type=int, default=12, help="logical CPUs of the local Ray: trial slots (default 12)")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between samples (default 2)")
    parser.add_argument("--out", type=Path, help="keep the sweep's files here (default: a temporary folder)")
    args = parser.parse_args(argv)
    if min(args.trials, args.reports, args.cpus) < 1 or args.interval < 0 or args.every <= 0:
        parser.error("--trials, --reports and --cpus must be >= 1, --interval >= 0, --every > 0")

    import ray
    from ray import tune

    from benchmarks.cluster_overhead import sleeping_trainable
    from sweeps.runner import finish_sweep, run_sweep
    from sweeps.settings import SweepSettings

    out = args.out or Path(tempfile.mkdtemp(prefix="long-sweep-"))
    database = out / "mlflow.db"
    settings = SweepSettings(study=STUDY, name="growth", out_dir=out / "results", storage=str(out / "tune"),
                             mlflow_uri=f"sqlite:///{database}", progress_every_s=60)
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    sampler = Sampler(settings.out_dir, out / "tune", database, args.every)
    sampler.start()
    start = time.perf_counter()
    param_space = {"reports": args.reports, "interval": args.interval, "index": tune.grid_search(range(args.trials))}
    frame, tracking = run_sweep(settings, sleeping_trainable, param_space, lambda c: f"trial {c['index']}",
                                args.trials, {"trials": args.trials})
    status = finish_sweep(frame, settings, tracking, ("results.parquet",))
    sampler.stopped.set()
    sampler.join()
    sampler.sample()
    wall = time.perf_counter() - start
    ray.shutdown()
    print_table(sampler.samples, args, wall, status)
    return status


def print_table(samples: list[tuple], args, wall: float, status: int) -> None:
    print(f"\n{args.trials} trials × {args.reports} reports {args.interval} s apart, local Ray with {args.cpus} "
          f"logical CPUs, sample every {args.every} s; sweep wall time {wall:.0f} s, exit status {status}\n")
    print("| trials finished | driver RSS (MB) | journal (MB) | results.parquet (MB) | Tune storage (MB) "
          "| MLflow db (MB) |\n|---:|---:|---:|---:|---:|---:|")
    for share in (0.1, 0.25, 0.5, 0.75, 1.0):
        _, done, rss, journal, table, storage, db = min(samples, key=lambda s: abs(s[1] - share * args.trials))
        print(f"| {done} | {rss:.0f} | {journal / MB:.2f} | {table / MB:.3f} | {storage / MB:.1f} | {db / MB:.1f} |")
    half = min(samples, key=lambda s: abs(s[1] - args.trials / 2))
    end = samples[-1]
    trials = max(1, end[1] - half[1])
    names = ("driver RSS", "journal", "results.parquet", "Tune storage", "MLflow db")
    per_trial = [(end[2] - half[2]) * MB / trials] + [(end[i] - half[i]) / trials for i in range(3, 7)]
    print(f"\nGrowth per trial over the second half ({half[1]} → {end[1]} trials): "
          + ", ".join(f"{name} {value / 1e3:.1f} kB" for name, value in zip(names, per_trial, strict=True)))


if __name__ == "__main__":
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    sys.exit(main())
