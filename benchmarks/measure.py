"""Measuring helpers shared by the benchmarks (run as scripts, so `from measure import …` finds this file)."""
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class OpCounter(TorchDispatchMode):
    """Counts the aten operations dispatched inside the block."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def dense_matmul_peak(sizes=(1024, 2048), tries: int = 3, device: torch.device | str = "cpu") -> float:
    """GFLOP/s of large square fp32 matmuls, the best of `tries` per size (CPU: with torch's current thread count)."""
    device = torch.device(device)

    def synchronise():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        a @ b
        for _ in range(tries):
            synchronise()
            start = time.perf_counter()
            a @ b
            synchronise()
            best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best
