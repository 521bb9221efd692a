"""Where a trial runs: its device (GPU when it was given one, else CPU) and its CPU thread budget.

Ray is looked up only when asked, so the Ray-free run cores (BiasGridRun, BiasGridPopulationRun, IntroVaeRun) also
import and run where Ray is not installed (a GPU machine running benchmarks/run_cells.py)."""
import logging

import torch

logger = logging.getLogger(__name__)


def running_ray():
    """The ray module when this process belongs to a running Ray session, else None (also where Ray is missing)."""
    try:
        import ray
    except ImportError:
        return None
    return ray if ray.is_initialized() else None


def resolve_device(requested: str) -> torch.device:
    """'auto' -> CUDA when this process sees a GPU, else CPU; 'cuda' without CUDA falls back to CPU with a warning.

    Ray sets CUDA_VISIBLE_DEVICES for each trial to the GPUs it assigned (none for CPU-only trials), so 'auto' uses
    exactly the GPU share the scheduler granted. Logical GPUs declared with `ray.init(num_gpus=N)` on a machine
    without CUDA are scheduled like real ones and land here on the CPU path.
    """
    if requested == "cpu" or not torch.cuda.is_available():
        if requested == "cuda":
            logger.warning("device 'cuda' requested but CUDA is not available here: running on CPU")
        return torch.device("cpu")
    return torch.device("cuda")


def flush_denormals() -> None:
    """Treat subnormal floats (|x| < 1.2e-38) as zero in CPU arithmetic (FTZ/DAZ; no effect on GPUs, which run
    fp32 at full speed either way). Late in training, Adam's second moments and the gradients of collapsed units
    fall into that range, and x86 cores take a slow microcode path on every such operand: a 21-member population at
    2×256 dropped from ~28 to ~10 steps/s after ~700 steps on an Intel Xeon (2026-12-05, benchmarks/RESULTS.md).
    Values that small are zero to every loss and metric here."""
    torch.set_flush_denormal(True)


def quiet_ray_worker_logs() -> None:
    """Ray logs one INFO line per persisted checkpoint from every trial; keep the console for progress lines."""
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)


def node_identity() -> dict[str, str]:
    """The Ray node this trial runs on: its id (unique per node, also for several nodes on one machine) and IP.
    Empty outside Ray."""
    ray = running_ray()
    if ray is None:
        return {"node_id": "", "node_ip": ""}
    return {"node_id": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address()}


def assigned_gpu_ids() -> list[str]:
    ray = running_ray()
    return [str(i) for i in ray.get_gpu_ids()] if ray else []


def use_assigned_cpus() -> int:
    """Limit torch's intra-op threads to the CPUs Ray granted this trial (so parallel trials don't oversubscribe)."""
    ray = running_ray()
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 0.0) if ray else 0.0
    threads = max(1, int(cpus)) if cpus else torch.get_num_threads()
    torch.set_num_threads(threads)
    return threads
