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


# aten ops that only make a new view or read metadata: no kernel runs on a GPU
METADATA_OPS = {"aten::" + name for name in (
    "view", "_unsafe_view", "reshape", "unsqueeze", "squeeze", "transpose", "t", "mT", "permute", "expand",
    "expand_as", "detach", "detach_", "alias", "slice", "select", "narrow", "as_strided", "unbind", "split", "chunk",
    "flatten", "unflatten", "resolve_conj", "resolve_neg", "lift_fresh", "empty", "empty_like", "empty_strided",
    "new_empty_strided", "to", "_to_copy_noop", "contiguous", "numpy_T", "set_", "requires_grad_", "is_nonzero")}
COMPILED_FUNCTIONS = ("CompiledFunction", "CompiledFunctionBackward")  # a compiled forward, backward


def kernel_launches(function) -> tuple[int, int]:
    """(ops that launch a kernel, compiled regions) in one call of `function`, from torch.profiler's CPU events.

    An op counts when no aten op encloses it (its own sub-ops are its kernels' business) and it is not metadata
    only; ops inside a compiled region are not counted one by one: each region counts once, as the one CUDA-graph
    replay it becomes under torch.compile's mode "reduce-overhead". The backward's ops count (the autograd engine
    dispatches them one by one)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        function()
    launches = regions = 0
    for event in profiler.events():
        ancestors, parent = [], event.cpu_parent
        while parent is not None:
            ancestors.append(parent.name)
            parent = parent.cpu_parent
        if any(a.startswith(COMPILED_FUNCTIONS) for a in ancestors):
            continue  # inside a region: part of its graph
        if event.name in COMPILED_FUNCTIONS:
            regions += 1
        elif event.name.startswith("aten::") and event.name not in METADATA_OPS \
                and not any(a.startswith(("aten::", "Torch-Compiled Region")) for a in ancestors):
            launches += 1
    return launches, regions
