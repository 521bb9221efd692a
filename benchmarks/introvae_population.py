#!/usr/bin/env python
"""Throughput of the 2D Soft-IntroVAE population engine (trainables/introvae_population.py) against lone runs.

Model-iterations per second of `IntroVaePopulationRun.train_interval` for P stacked members (default P = 1, 12, 60)
and, measured in the same process just before each population, of one lone `IntroVaeRun` (what one process of a
one-model-per-process sweep gets from the same thread budget); the ratio is stacked model-iterations/s over lone
iterations/s. The warm-up
(β-ELBO) and the introspective stage are measured separately: a run with num_vae beyond the budget stays in the
warm-up, one with num_vae = 0 is introspective from its first iteration.

  python benchmarks/introvae_population.py [--seconds 3] [--sizes 1 12 60] [--priors standard mog] [--threads 1]
      [--width 256] [--depth 3] [--batch 512] [--components 64] [--compiled]

Defaults are the spec's 2D protocol (3×256 MLPs, batch 512, K = 64). Prints Markdown.
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project, where it is not installed

import torch  # noqa: E402

from trainables.introvae import IntroVaeRun  # noqa: E402
from trainables.introvae_population import IntroVaePopulationRun  # noqa: E402
from trainables.runtime import flush_denormals  # noqa: E402

STAGES = {"warm-up": 10**9, "introspective": 0}  # num_vae for a run that stays in the stage


def iterations_per_second(run, seconds: float) -> float:
    """Two untimed iterations (allocator, first-call costs; compiled: the recorded eager iteration, then the
    compilation), then single iterations until `seconds` have passed (at least one)."""
    run.train_interval(2)
    iterations, start = 0, time.perf_counter()
    while iterations == 0 or time.perf_counter() - start < seconds:
        run.train_interval(1)
        iterations += 1
    return iterations / (time.perf_counter() - start)


def config(args, prior: str, num_vae: int) -> dict:
    return {"prior": prior, "num_vae": num_vae, "steps": 10**9, "batch_size": args.batch, "hidden_width": args.width,
            "hidden_depth": args.depth, "num_components": args.components, "r_entropy": 0.5 if prior != "standard"
            else 0.0, "lr_milestones": "", "device": "cpu"}


def member_settings(size: int) -> dict:
    """Members differ in seed and β (as a sweep's would): β_kl around the 8Gaussians reference, β_neg = 3·β_kl."""
    return {"beta_neg_multiple": 3.0,
            "members": [{"seed": p, "beta_kl": 0.1 + 0.4 * p / max(size - 1, 1)} for p in range(size)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per measurement (default 3)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 12, 60], help="population sizes P")
    parser.add_argument("--priors", nargs="+", default=["standard", "mog"], choices=("standard", "mog", "vamp"))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--width", type=int, default=256, help="MLP width (default 256)")
    parser.add_argument("--depth", type=int, default=3, help="MLP hidden layers (default 3)")
    parser.add_argument("--batch", type=int, default=512, help="points per iteration (default 512)")
    parser.add_argument("--components", type=int, default=64, help="K of the mixture priors (default 64)")
    parser.add_argument("--compiled", action="store_true", help="also each population with compile_step")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    flush_denormals()

    print(f"CPU, {args.threads} thread(s); MLP {args.depth}×{args.width}, batch {args.batch}, K {args.components}, "
          f"{args.seconds:g} s per measurement\n")
    compiled_columns = " compiled model-it/s | compiled ÷ eager |" if args.compiled else ""
    print("| prior | stage | P | stacked model-it/s | lone it/s | ratio |" + compiled_columns)
    print("|---|---|---:|---:|---:|---:|" + ("---:|---:|" if args.compiled else ""))
    for prior in args.priors:
        for stage, num_vae in STAGES.items():
            for size in args.sizes:
                # the lone run again beside every population: a shared machine's load drifts between measurements
                lone = iterations_per_second(IntroVaeRun(config(args, prior, num_vae)), args.seconds)
                run = IntroVaePopulationRun({**config(args, prior, num_vae), **member_settings(size)})
                stacked = size * iterations_per_second(run, args.seconds)
                row = f"| {prior} | {stage} | {size} | {stacked:.1f} | {lone:.1f} | {stacked / lone:.2f}× |"
                if args.compiled:
                    run = IntroVaePopulationRun({**config(args, prior, num_vae), **member_settings(size),
                                                 "compile_step": True})
                    compiled = size * iterations_per_second(run, args.seconds)
                    row += f" {compiled:.1f} | {compiled / stacked:.2f}× |"
                print(row, flush=True)


if __name__ == "__main__":
    main()
