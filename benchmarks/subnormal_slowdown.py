#!/usr/bin/env python
"""Training rate of one bias-grid population over its first steps, with subnormal floats kept (IEEE default) and
flushed to zero (what every trial does: trainables/runtime.flush_denormals), side by side in one run.

Late in training, Adam's second moments and the gradients of collapsed units become subnormal (|x| < 1.2e-38);
x86 cores handle such operands on a slow microcode path. Each configuration trains a fresh population (same seeds,
so the same numbers up to the flushed values) in its own process, one thread, and prints steps/s per interval.

  .venv/bin/python benchmarks/subnormal_slowdown.py [--width 256] [--steps 1500] [--interval 100]

Prints Markdown (copy it into benchmarks/RESULTS.md with this command line).
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BETAS = [0.1, 0.25, 0.5, 1, 2, 4, 8]


def rates(width: int, steps: int, interval: int, flush: bool) -> list[float]:
    """steps/s per interval of a 21-member population (7 β × seeds 0, 1, 2), trained in this process."""
    import torch

    from trainables.bias_grid_population import BiasGridPopulationRun

    torch.set_num_threads(1)
    torch.set_flush_denormal(flush)
    run = BiasGridPopulationRun({"betas": BETAS, "seeds": [0, 1, 2], "hidden_width": width, "steps": steps})
    measured = []
    while run.step < steps:
        start = time.perf_counter()
        run.train_interval(interval)
        measured.append(interval / (time.perf_counter() - start))
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=256, help="hidden width (paper: 256)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--interval", type=int, default=100)
    parser.add_argument("--child", choices=("kept", "flushed"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one configuration, in a fresh process: the flag is process-wide
        print(json.dumps(rates(args.width, args.steps, args.interval, args.child == "flushed")))
        return
    columns = {}
    for mode in ("kept", "flushed"):
        done = subprocess.run([sys.executable, __file__, "--width", str(args.width), "--steps", str(args.steps),
                               "--interval", str(args.interval), "--child", mode], cwd=ROOT, check=True,
                              capture_output=True, text=True)
        columns[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"21-member population (7 β × 3 seeds), width {args.width}, batch 64, one thread; steps/s per "
          f"{args.interval}-step interval\n")
    print("| steps | subnormals kept | flushed to zero |\n|---:|---:|---:|")
    for i, (kept, flushed) in enumerate(zip(columns["kept"], columns["flushed"], strict=True)):
        print(f"| {i * args.interval + 1}–{(i + 1) * args.interval} | {kept:.1f} | {flushed:.1f} |")
    total = args.steps / args.interval
    print(f"\nwhole run: {total / sum(1 / r for r in columns['kept']):.1f} steps/s kept, "
          f"{total / sum(1 / r for r in columns['flushed']):.1f} flushed")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
