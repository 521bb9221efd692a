#!/usr/bin/env python
"""Iterations/s of the Soft-IntroVAE trainable at the reference 2D protocol (batch 512, 3×256 MLPs, latent 2,
K = 64, 100-sample MC KL), per prior and stage, against the reference code's rates on this machine (spec
introvae.md, "Throughput anchors"), with the share of time in the Monte Carlo KL (torch.profiler: the forward
ranges labelled by models.priors plus the backward of the fused mixture log-density and of the responsibilities).

  .venv/bin/python benchmarks/introvae_throughput.py [--threads 1 2] [--final-eval]

Prints a Markdown table (copy it into benchmarks/RESULTS.md with this command line).
"""
import argparse
import time

import torch
from measure import dense_matmul_peak
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from models.priors import MC_KL_RANGE
from trainables.introvae import IntroVaeRun

REFERENCE_RATES = {"standard": (90.0, 20.0), "mog": (12.0, 3.2)}  # (warm-up, introspective) it/s, spec anchors
ITERATIONS = {"standard": (120, 40), "mog": (60, 24), "vamp": (60, 24)}
PROTOCOL = {"dataset": "8gaussians", "batch_size": 512, "num_components": 64, "hidden_width": 256,
            "hidden_depth": 3, "steps": 30_000}
MC_KL_BACKWARD_NODES = ("_FeatureLogSumExpBackward", "LogsumexpBackward", "SoftmaxBackward", "ExpBackward0")


def iterations_per_second(run: IntroVaeRun, n: int) -> float:
    run.train_interval(max(3, n // 10))  # warm caches and allocator
    start = time.perf_counter()
    run.train_interval(n)
    return n / (time.perf_counter() - start)


def mc_kl_share(run: IntroVaeRun, n: int) -> float:
    """Fraction of the profiled CPU time spent in MC KL forwards and their backward nodes."""
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        run.train_interval(n)
    events = profiler.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    forward = sum(e.cpu_time_total for e in events if e.key == MC_KL_RANGE)
    backward = sum(e.cpu_time_total for e in events
                   if e.key.startswith("autograd::engine::evaluate_function:")
                   and any(node in e.key for node in MC_KL_BACKWARD_NODES))
    return (forward + backward) / total if total else float("nan")


def flops_per_iteration(run: IntroVaeRun) -> float:
    """Matmul FLOPs of one iteration, forward and backward (torch's FlopCounterMode)."""
    with FlopCounterMode(display=False) as counter:
        run.train_interval(1)
    return float(counter.get_total_flops())


def stage_runs(prior: str) -> tuple[IntroVaeRun, IntroVaeRun]:
    warm = IntroVaeRun({**PROTOCOL, "prior": prior, "num_vae": 20_000})  # stays in stage 1
    intro = IntroVaeRun({**PROTOCOL, "prior": prior, "num_vae": 0})  # stage 2 from the first iteration
    return warm, intro


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--final-eval", action="store_true", help="also time the final evaluation (gnELBO on the "
                        "1024² grid, histograms, mode usage, density image) per prior")
    args = parser.parse_args()
    print("| prior | threads | warm-up it/s | × reference | introspective it/s | × reference | MC KL share "
          "(warm-up / introspective) | introspective GFLOP/iteration (matmul) | GFLOP/s (% of peak) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        peak = dense_matmul_peak()
        for prior in ("standard", "mog", "vamp"):
            warm, intro = stage_runs(prior)
            n_warm, n_intro = ITERATIONS[prior]
            rates = (iterations_per_second(warm, n_warm), iterations_per_second(intro, n_intro))
            flops = flops_per_iteration(intro) / 1e9
            reference = REFERENCE_RATES.get(prior)
            ratios = [f"{r / ref:.2f}×" if reference else "—" for r, ref in zip(rates, reference or (1, 1),
                                                                                  strict=True)]
            shares = "—"
            if prior != "standard":
                shares = f"{mc_kl_share(warm, n_warm // 3):.0%} / {mc_kl_share(intro, n_intro // 3):.0%}"
            achieved = flops * rates[1]
            print(f"| {prior} | {threads} | {rates[0]:.1f} | {ratios[0]} | {rates[1]:.1f} | {ratios[1]} | "
                  f"{shares} | {flops:.2f} | {achieved:.0f} ({achieved / peak:.0%} of {peak:.0f}) |", flush=True)
    if args.final_eval:
        torch.set_num_threads(max(args.threads))
        print("\n| prior | final evaluation (s) |\n|---|---:|")
        for prior in ("standard", "mog", "vamp"):
            run = IntroVaeRun({**PROTOCOL, "prior": prior, "num_vae": 0})
            run.train_interval(2)
            start = time.perf_counter()
            run.evaluate_final()
            print(f"| {prior} | {time.perf_counter() - start:.1f} |", flush=True)


if __name__ == "__main__":
    main()
