#!/usr/bin/env python
"""Training throughput of the bias-grid population engine against population size P, on one device (CPU or a GPU),
without Ray: model-steps/s of `BiasGridPopulationRun.train_interval` for P = 1, 7, 21, 77, 231 (one row, one
bias × seed, the whole demo grid, the whole paper grid as one population) and of a lone `BiasGridRun`, at the
paper architecture (2×256) and at width 64, batch 64; achieved matmul GFLOP/s against a dense fp32 matmul measured
in the same run. On a launch-bound GPU a population step costs about what one model's step costs, so model-steps/s
grow ~P× until the arithmetic fills the device.

  python benchmarks/population_scaling.py --device cuda [--sizes 1 7 21 77 231] [--seconds 3] [--threads N]
      [--compiled]    # also the compiled step (compile_step: CUDA graphs on a GPU, inductor on a CPU), side by side

Prints Markdown (copy it into benchmarks/RESULTS.md with this command line).
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project, where it is not installed

import torch  # noqa: E402
from measure import dense_matmul_peak  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from trainables.bias_grid import BiasGridRun  # noqa: E402
from trainables.bias_grid_population import BiasGridPopulationRun  # noqa: E402
from trainables.runtime import flush_denormals  # noqa: E402


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_steps_per_second(run, members: int, seconds: float) -> float:
    """Steps in intervals of 50 until `seconds` have passed, after a warm-up interval (allocator, kernels)."""
    run.train_interval(20)
    synchronise(run.device)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run.train_interval(50)
        steps += 50
    synchronise(run.device)
    return members * steps / (time.perf_counter() - start)


def matmul_flops_per_model_step(width: int, device: torch.device) -> float:
    run = BiasGridPopulationRun({"betas": [1.0] * 7, "hidden_width": width}, device)
    run.train_interval(2)
    with FlopCounterMode(display=False) as counter:
        run.train_interval(1)
    return counter.get_total_flops() / 7


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 7, 21, 77, 231])
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 64])
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per measurement")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    parser.add_argument("--compiled", action="store_true", help="also measure each population with compile_step")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    flush_denormals()  # as in a trial (trainables/trial_loop.trial_device)
    device = torch.device(args.device)
    peak = dense_matmul_peak(sizes=(2048, 4096, 8192) if device.type == "cuda" else (1024, 2048), device=device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{name}; torch {torch.__version__}; dense fp32 matmul peak {peak:.0f} GFLOP/s "
          f"(TF32 {'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'})\n")
    print("| width | engine | P | model-steps/s | × lone model | matmul GFLOP/s (% of peak) |")
    print("|---:|---|---:|---:|---:|---:|")
    for width in args.widths:
        flops = matmul_flops_per_model_step(width, device)
        lone = model_steps_per_second(BiasGridRun({"hidden_width": width}, device), 1, args.seconds)
        rows = [("lone model (BiasGridRun)", 1, lone)]
        for size in args.sizes:
            for compiled in (False, True) if args.compiled else (False,):
                run = BiasGridPopulationRun({"betas": [1.0] * size, "hidden_width": width, "compile_step": compiled},
                                            device)
                engine = "population, compiled step" if compiled else "population"
                rows.append((engine, size, model_steps_per_second(run, size, args.seconds)))
                del run
        for engine, size, rate in rows:
            achieved = rate * flops / 1e9
            print(f"| {width} | {engine} | {size} | {rate:,.0f} | {rate / lone:.2f}× | "
                  f"{achieved:,.1f} ({achieved / peak:.1%}) |", flush=True)


if __name__ == "__main__":
    main()
