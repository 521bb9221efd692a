#!/usr/bin/env python
"""Model-steps per second of a whole bias-grid sweep: (a) one model per Ray trial (the issue-2 path) against (b) the
population engine (its default: every β × seed of one bias in one trial), side by side in one run, at the paper
architecture (2×256) and at width 64; real Ray, real MLflow (SQLite), evaluation and logging included.
Also: matmul FLOPs per model-step (torch's FlopCounterMode), the achieved GFLOP/s against a dense-matmul peak
measured in the same run, and the aten operations per population step at P = 1, 7, 21.

  .venv/bin/python benchmarks/bias_grid_throughput.py [--steps 2000] [--biases 0 5] [--seeds 0 1 2] \
      [--widths 256 64] [--repeats 1]

With --repeats N, (a) and (b) alternate N times per width and the best of each is kept (a shared VM's run-to-run
spread is ±25%); every repeat's figure is printed too.

Prints Markdown (copy it into benchmarks/RESULTS.md with this command line).
"""
import argparse
import tempfile
import time
from pathlib import Path

import ray
import torch
from measure import OpCounter, dense_matmul_peak
from torch.utils.flop_counter import FlopCounterMode

from sweeps.bias_grid import main as bias_grid_main
from trainables.bias_grid_population import BiasGridPopulationRun

BETAS = ["0.1", "0.25", "0.5", "1", "2", "4", "8"]


def population_step_profile(width: int, size: int) -> tuple[float, int]:
    """(matmul FLOPs per model-step, aten ops per population step) of a population of `size` at batch 64."""
    run = BiasGridPopulationRun({"betas": [1.0] * size, "hidden_width": width, "steps": 10})
    run.train_interval(2)
    with FlopCounterMode(display=False) as flops:
        run.train_interval(1)
    with OpCounter() as ops:
        run.train_interval(1)
    return flops.get_total_flops() / size, ops.count


def sweep_rate(root: Path, name: str, width: int, steps: int, biases: list[str], seeds: list[str],
               population_size: int) -> float:
    args = ["--preset", "paper", "--name", name, "--out", str(root / "results"), "--mlflow-uri",
            f"sqlite:///{root}/mlflow.db", "--betas", *BETAS, "--biases", *biases, "--seeds", *seeds, "--steps",
            str(steps), "--report-every", str(steps // 4), "--hidden-width", str(width), "--population-size",
            str(population_size)]
    start = time.perf_counter()
    assert bias_grid_main(args) == 0
    return len(BETAS) * len(biases) * len(seeds) * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--biases", nargs="+", default=["0", "5"])
    parser.add_argument("--seeds", nargs="+", default=["0", "1", "2"], help="the paper preset's three by default")
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 64], help="hidden widths (paper: 256)")
    parser.add_argument("--repeats", type=int, default=1, help="alternating (a)/(b) sweeps per width; best kept")
    args = parser.parse_args()
    torch.set_num_threads(2)
    peak = dense_matmul_peak(sizes=(1024, 2048, 4096), tries=2)
    torch.set_num_threads(1)
    print(f"dense fp32 matmul peak, 2 threads (n = 1024…4096): {peak:.0f} GFLOP/s\n")
    print("| P | aten ops per population step (width 256) |\n|---:|---:|")
    for size in (1, 7, 21):
        print(f"| {size} | {population_step_profile(256, size)[1]} |", flush=True)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        for width in args.widths:
            flops_per_model_step = population_step_profile(width, 7)[0]
            singles, populations = [], []
            for repeat in range(args.repeats):
                singles.append(sweep_rate(root, f"single-{width}-{repeat}", width, args.steps, args.biases,
                                          args.seeds, population_size=1))
                populations.append(sweep_rate(root, f"population-{width}-{repeat}", width, args.steps, args.biases,
                                              args.seeds, population_size=len(BETAS) * len(args.seeds)))
                print(f"width {width}, repeat {repeat + 1}: (a) {singles[-1]:.0f}, (b) {populations[-1]:.0f} "
                      f"model-steps/s ({populations[-1] / singles[-1]:.2f}×)", flush=True)
            single, population = max(singles), max(populations)
            rows.append((width, flops_per_model_step, single, population))
    ray.shutdown()
    cells = len(BETAS) * len(args.biases) * len(args.seeds)
    print(f"\nwhole sweep: {cells} models ({len(args.biases)} biases × 7 β × {len(args.seeds)} seeds) × {args.steps} "
          f"steps, batch 64, 2 trials at a time (1 CPU each), MLflow SQLite, evaluation included; (b) trains "
          f"{len(BETAS) * len(args.seeds)} models per trial\n")
    print("| width | MFLOP per model-step | (a) one model per trial: model-steps/s | GFLOP/s (% of peak) | "
          "(b) population: model-steps/s | GFLOP/s (% of peak) | (b)/(a) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for width, flops, single, population in rows:
        g_single, g_population = single * flops / 1e9, population * flops / 1e9
        print(f"| {width} | {flops / 1e6:.1f} | {single:.0f} | {g_single:.1f} ({g_single / peak:.0%}) | "
              f"{population:.0f} | {g_population:.1f} ({g_population / peak:.0%}) | {population / single:.2f}× |")


if __name__ == "__main__":
    main()
