#!/usr/bin/env python
"""Run Soft-IntroVAE cells without Ray or MLflow, for a machine that has only torch, pandas and pyarrow (a lent GPU
machine): the sweep's run core, preset, config validation, report cadence (histogram metrics every
`report_every` iterations, the final evaluation at the end) and results-row format, each cell in its own process,
several at once.

  python benchmarks/run_cells.py --preset paper2d --dataset checkerboard --prior mog vamp --seeds 0 \\
      --device cuda --out DIR [--parallel 2] [--threads 4] [--iterations N] [--num-vae N]

Writes DIR/results.parquet (one row per cell, as a sweep writes it, added as each cell ends), which
`python -m analysis tables --results DIR` reads alone or beside sweep results. No checkpoints, no resume: a cell
either finishes here or is run again.
"""
import argparse
import multiprocessing
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project, where it is not installed

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from sweeps.cells import cell_row  # noqa: E402
from sweeps.presets import ALL_2D, ALL_PRIORS, INTROVAE_PRESETS  # noqa: E402
from tracking.files import RESULTS_FILE, write_parquet  # noqa: E402
from trainables.introvae import STUDY, train_introvae, validate_config  # noqa: E402


class LastReportSink:
    """Keeps the last report and prints a progress line per report (no checkpoints: a cell runs start to end)."""

    def __init__(self, label: str):
        self.label, self.last, self.started = label, {}, time.perf_counter()

    def restore(self, run) -> bool:
        return False

    def report(self, metrics: dict, run, checkpoint: bool) -> None:
        self.last = {**metrics, "time_total_s": time.perf_counter() - self.started}
        figures = ", ".join(f"{k} {metrics[k]:.4g}" for k in ("eval/kl", "eval/jsd", "eval/gnelbo") if k in metrics)
        print(f"{self.label}: step {metrics.get('step')}/{metrics.get('total_steps')}, "
              f"{metrics.get('train/iterations_per_second', float('nan')):.1f} it/s, {figures} "
              f"({self.last['time_total_s']:.0f} s)", flush=True)


def run_cell(job: tuple[dict, str, int]) -> dict:
    config, sweep, threads = job
    torch.set_num_threads(threads)
    label = f"{config['dataset']} {config['prior']} seed={config['seed']}"
    sink = LastReportSink(label)
    train_introvae(config, sink=sink)
    cell_id = f"{config['dataset']}-{config['prior']}-seed{config['seed']}"
    return cell_row(cell_id, validate_config(config), sink.last, sink.last.get("status", "error"), STUDY, sweep, None)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(INTROVAE_PRESETS), default="paper2d")
    parser.add_argument("--dataset", nargs="+", choices=ALL_2D)
    parser.add_argument("--prior", nargs="+", choices=ALL_PRIORS)
    parser.add_argument("--seeds", nargs="+", type=int)
    parser.add_argument("--iterations", type=int)
    parser.add_argument("--num-vae", type=int)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    parser.add_argument("--parallel", type=int, default=2, help="cells at once, each in its own process")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per cell")
    parser.add_argument("--name", default="run-cells", help="the sweep name written in each row")
    parser.add_argument("--out", type=Path, required=True, help="folder for results.parquet")
    args = parser.parse_args(argv)
    preset = INTROVAE_PRESETS[args.preset]
    overrides = {k: v for k, v in (("iterations", args.iterations), ("num_vae", args.num_vae)) if v is not None}
    cells = [{**preset.trial, **overrides, "dataset": d, "prior": p, "seed": s, "device": args.device}
             for d in args.dataset or preset.datasets for p in args.prior or preset.priors
             for s in (args.seeds if args.seeds is not None else preset.seeds)]
    try:
        for cell in cells:  # every config is checked before anything starts
            validate_config(cell)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    # spawn: CUDA cannot be used in a forked child of a process that touched it
    with multiprocessing.get_context("spawn").Pool(args.parallel) as pool:
        for row in pool.imap_unordered(run_cell, [(c, args.name, args.threads) for c in cells]):
            rows.append(row)
            write_parquet(pd.DataFrame(rows), args.out / RESULTS_FILE)
            print(f"[{len(rows)}/{len(cells)} done] {row['trial_id']}: {row['status']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
