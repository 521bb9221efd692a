#!/usr/bin/env python
"""Where a population trial's time goes: construction, PMI baseline, training, validation, checkpoints and the final
evaluation of one bias-grid population (7 β × the given seeds, 2,000 steps, reports every 500: the throughput
benchmark's trial), without Ray, on one thread.

  .venv/bin/python benchmarks/population_trial_phases.py [--width 256] [--steps 2000] [--seeds 0 1 2]
"""
import argparse
import tempfile
import time

import torch

from trainables.bias_grid_population import BiasGridPopulationRun
from trainables.runtime import flush_denormals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--report-every", type=int, default=500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="the paper preset's three")
    args = parser.parse_args()
    torch.set_num_threads(1)
    flush_denormals()  # as in a trial (trainables/trial_loop.trial_device)
    seconds: dict[str, float] = {}
    last = time.perf_counter()

    def mark(phase: str) -> None:
        nonlocal last
        now = time.perf_counter()
        seconds[phase] = seconds.get(phase, 0.0) + now - last
        last = now

    run = BiasGridPopulationRun({"betas": [0.1, 0.25, 0.5, 1, 2, 4, 8], "hidden_width": args.width, "bias": 5.0,
                                 "seeds": args.seeds, "steps": args.steps, "report_every": args.report_every})
    mark("construct")
    run.measure_baseline()
    mark("baseline")
    while run.step < args.steps:
        run.train_interval(min(args.report_every, args.steps - run.step))
        mark("train")
        run.validation()
        mark("validation")
        with tempfile.TemporaryDirectory() as directory:
            run.save(directory)
        mark("save")
    run.evaluate()
    mark("evaluate")
    total = sum(seconds.values())
    print(f"width {args.width}: " + ", ".join(f"{k} {v:.2f} s ({v / total:.0%})" for k, v in seconds.items())
          + f"; total {total:.1f} s")


if __name__ == "__main__":
    main()
