#!/usr/bin/env python
"""Kernel launches per training step, eager against compiled (compile_step), for both population engines, and
the launch-bound time of a step on a GPU they imply.

Why: on a GPU a small population's step is launch-bound: every op that runs a kernel costs the host ~20 µs
(measured on the H200 for the β × bias population: ~4 ms a step whatever P), however little the kernel does.
Captured steps (trainables/captured_step.py; torch.compile with mode "reduce-overhead" on a GPU) replace each
loss's forward and backward by one CUDA-graph replay each; what stays outside is counted one by one (the data and
noise each member draws from its own generator, the fused Adam updates, the bookkeeping).

Counted on the CPU (no GPU needed) with torch.profiler (benchmarks/measure.kernel_launches): top-level aten ops
that are not metadata-only, plus one per compiled forward or backward. The counts do not depend on widths, batch
or K, so the networks are small; they do depend on P (per-member draws). The launch-bound time is the count times
`--launch-us` (a lower bound on a step: the kernels' own work comes on top, see RESULTS.md).

  python benchmarks/step_launches.py [--sizes 1 12 60] [--bias-grid-sizes 231] [--launch-us 20] 2>/dev/null

Columns: eager (each member's own generator), compiled, and compiled with `noise_streams: population` (one call per
draw for all members).

Then the evaluation of one 2D run at the protocol's settings (a report's histograms every 500 iterations, the final
gnELBO on a 1024² grid and the density image), with a GPU's negative-ELBO chunks (density2d.ELBO_CHUNK), and what
the protocol's 60 runs (20 standard, 40 mixture) spend on it at `--launch-us`: the case for batching evaluation
across members, or not.

Prints Markdown.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project, where it is not installed

import torch  # noqa: E402
from measure import kernel_launches  # noqa: E402

from trainables.bias_grid_population import BiasGridPopulationRun  # noqa: E402
from trainables.introvae import IntroVaeRun  # noqa: E402
from trainables.introvae_population import IntroVaePopulationRun  # noqa: E402
from trainables.metrics import density2d  # noqa: E402

SMALL_2D = {"batch_size": 32, "hidden_width": 16, "num_components": 4, "lr_milestones": "", "steps": 10**9,
            "num_vae": 3}  # iterations 0-2 warm-up, then introspective


def introvae_counts(prior: str, size: int, compile_step: bool, noise_streams: str = "member") \
        -> dict[str, tuple[int, int]]:
    """Launches of one warm-up and one introspective iteration of a population of `size` (each stage's first
    iterations, recorded and compiled, run before the counted one)."""
    torch._dynamo.reset()  # every population compiles afresh: no cache limit reached across sizes
    run = IntroVaePopulationRun({**SMALL_2D, "prior": prior, "r_entropy": 0.5 if prior != "standard" else 0.0,
                                 "compile_step": compile_step, "noise_streams": noise_streams,
                                 "members": [{"seed": p} for p in range(size)]})
    run.train_interval(2)
    warmup = kernel_launches(lambda: run.train_interval(1))
    run.train_interval(2)
    return {"warm-up": warmup, "introspective": kernel_launches(lambda: run.train_interval(1))}


def bias_grid_counts(size: int, compile_step: bool) -> tuple[int, int]:
    torch._dynamo.reset()
    run = BiasGridPopulationRun({"betas": [1.0] * size, "hidden_width": 16, "compile_step": compile_step})
    run.train_interval(2)
    return kernel_launches(lambda: run.train_interval(1))


def evaluation_counts(prior: str) -> dict[str, int]:
    """Launches of one report's histogram evaluation and of the final evaluation of a lone run (the population
    engine evaluates each member through its lone run), with the GPU's chunks."""
    run = IntroVaeRun({**SMALL_2D, "prior": prior})
    run.train_interval(5)
    density2d.ELBO_CHUNK[False] = density2d.ELBO_CHUNK[True]  # count the chunks a GPU would take
    return {"report": kernel_launches(run.evaluate_histograms)[0], "final": kernel_launches(run.evaluate_final)[0]}


def evaluation_table(launch_us: float, reports: int = 60, runs: dict[str, int] | None = None) -> None:
    """Per run, and the protocol's total: `reports` histogram evaluations + one final per run."""
    runs = runs or {"standard": 20, "mog": 40}  # 4 datasets × 5 seeds; MoG and VampPrior (a MoG once converted)
    print(f"\nEvaluation launches of one 2D run ({reports} reports + final, GPU chunks of "
          f"{density2d.ELBO_CHUNK[True]} points)\n")
    print(f"| prior | one report | final | per run | protocol runs | protocol launches | at {launch_us:g} µs |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for prior, count in runs.items():
        counts = evaluation_counts(prior)
        per_run = reports * counts["report"] + counts["final"]
        print(f"| {prior} | {counts['report']} | {counts['final']} | {per_run} | {count} | {per_run * count} | "
              f"{per_run * count * launch_us / 1e6:.1f} s |", flush=True)


def row(name: str, stage: str, size: int, counts: list[tuple[int, int]], launch_us: float) -> str:
    """counts: eager, then each compiled variant; a compiled count is (ops outside, graphs)."""
    eager_ms = sum(counts[0]) * launch_us / 1000
    cells = [f"{counts[0][0]} ({eager_ms:.1f} ms)"]
    for outside, graphs in counts[1:]:
        ms = (outside + graphs) * launch_us / 1000
        cells.append(f"{outside} + {graphs} graphs ({ms:.1f} ms, {eager_ms / ms:.1f}×)")
    return f"| {name} | {stage} | {size} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 12, 60], help="Soft-IntroVAE population sizes")
    parser.add_argument("--priors", nargs="+", default=["standard", "mog"], choices=("standard", "mog", "vamp"))
    parser.add_argument("--bias-grid-sizes", type=int, nargs="+", default=[231], help="β × bias population sizes")
    parser.add_argument("--launch-us", type=float, default=20.0, help="host cost of one launch, µs (default 20)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # inductor's CPU kernels spin their threads; counts do not depend on it

    print(f"Launches per step (launch-bound time per step at {args.launch_us:g} µs a launch; × eager)\n")
    print("| engine | stage | P | eager | compiled | compiled, one population stream |")
    print("|---|---|---:|---:|---:|---:|")
    for size in args.bias_grid_sizes:
        print(row("β × bias", "step", size, [bias_grid_counts(size, False), bias_grid_counts(size, True)],
                  args.launch_us) + " — |", flush=True)
    for prior in args.priors:
        for size in args.sizes:
            variants = [introvae_counts(prior, size, False), introvae_counts(prior, size, True),
                        introvae_counts(prior, size, True, "population")]
            for stage in variants[0]:
                print(row(f"Soft-IntroVAE {prior}", stage, size, [v[stage] for v in variants], args.launch_us),
                      flush=True)
    evaluation_table(args.launch_us)


if __name__ == "__main__":
    main()
