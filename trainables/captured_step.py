"""Training steps through torch.compile (`compile_step`), one rule for both population engines.

On a GPU the compiled functions run in mode "reduce-overhead": inductor's fused kernels replayed as CUDA graphs over
static buffers, so a step costs a few graph launches instead of hundreds of kernel launches (a population's step is
launch-bound there: ~20 µs per op whatever P). On a CPU the same functions run inductor's fused C++ kernels (no
graphs there). Shapes never change within a run (a population's batches are fixed), so the graphs are static
(`dynamic=False`) and recompile only where a run changes kind (the VampPrior's conversion, the learning-rate steps).

What is compiled is each loss with its backward (AOTAutograd traces both); the update is the fused Adam
(trainables/optim.py), already one pass over each parameter. On a GPU the outputs are copied out of the graphs'
memory (a few small copies a step), as what a step returns outlives the next replay.

Not yet run on a GPU (none was lent since this was written): the CPU path is tested against the eager step, the
GPU path is the same functions under mode "reduce-overhead".
"""
import torch
from torch.utils._pytree import tree_map


def compiled(function, device: torch.device):
    """`function` through torch.compile, CUDA graphs on a GPU, inductor's kernels on a CPU."""
    if device.type != "cuda":
        return torch.compile(function, mode="default", dynamic=False)
    replayed = torch.compile(function, mode="reduce-overhead", dynamic=False)

    def with_outputs_copied(*args, **kwargs):
        # a CUDA graph's outputs live in its memory pool, which its next replay (or another graph of the same tree)
        # overwrites; what a step keeps (metrics gathered over an interval, the encoder's state for the decoder's
        # loss) is copied out. Clones keep the loss's autograd graph.
        return tree_map(lambda value: value.clone() if torch.is_tensor(value) else value,
                        replayed(*args, **kwargs))

    return with_outputs_copied


def begin_step(device: torch.device) -> None:
    """Marks where a training iteration begins, for the CUDA graphs (no-op elsewhere). An iteration here calls two or
    three compiled losses, each with its own backward, so the graphs' own rule (a new iteration at every call with
    no backward pending) is left no guessing; the previous iteration's graph outputs are released (what a step keeps
    was copied out). Called by the engines at each iteration of a compiled run."""
    if device.type == "cuda":
        torch.compiler.cudagraph_mark_step_begin()


def compiled_if(enabled: bool, device: torch.device):
    """A wrapper for each function of a step: `compiled` when `enabled`, else the function itself (eager)."""
    return (lambda function: compiled(function, device)) if enabled else (lambda function: function)
