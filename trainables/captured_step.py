"""Training steps through torch.compile (`compile_step`), one rule for both population engines.

On a GPU the compiled functions run in mode "reduce-overhead": inductor's fused kernels replayed as CUDA graphs over
static buffers, so a step costs a few graph launches instead of hundreds of kernel launches (a population's step is
launch-bound there: ~20 µs per op whatever P). On a CPU the same functions run inductor's fused C++ kernels (no
graphs there). Shapes never change within a run (a population's batches are fixed), so the graphs are static
(`dynamic=False`) and recompile only where a run changes kind (the VampPrior's conversion, the learning-rate steps).

What is compiled is each loss with its backward (AOTAutograd traces both); the update is the fused Adam
(trainables/optim.py), already one pass over each parameter.
"""
import torch


def compiled(function, device: torch.device):
    """`function` through torch.compile, CUDA graphs on a GPU, inductor's kernels on a CPU."""
    return torch.compile(function, mode="reduce-overhead" if device.type == "cuda" else "default", dynamic=False)


def compiled_if(enabled: bool, device: torch.device):
    """A wrapper for each function of a step: `compiled` when `enabled`, else the function itself (eager)."""
    return (lambda function: compiled(function, device)) if enabled else (lambda function: function)
