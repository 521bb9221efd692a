"""GPU scheduling with logical GPUs (`ray.init(num_gpus=…)`): fractions are honoured, and without CUDA the
trials fall back to the CPU instead of failing."""
import pandas as pd
import pytest
import ray
import torch

from sweeps.bias_grid import main as bias_grid_main

pytestmark = pytest.mark.integration


@pytest.fixture
def ray_with_logical_gpus():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_fractional_gpu_trials_run_and_fall_back_to_cpu(ray_with_logical_gpus, tmp_path):
    code = bias_grid_main(["--preset", "smoke", "--name", "gpu", "--out", str(tmp_path), "--no-mlflow",
                           "--cpus-per-trial", "0.5", "--gpus-per-trial", "0.5", "--steps", "50",
                           "--report-every", "50"])
    assert code == 0
    table = pd.read_parquet(tmp_path / "bias_grid" / "gpu" / "results.parquet")
    assert len(table) == 4 and (table["status"] == "completed").all()
    assert table["gpu_ids"].str.len().gt(0).all()  # every trial was granted a (logical) GPU share
    assert set(table["gpu_ids"]) <= {"0", "1"}
    assert (table["device"] == ("cuda" if torch.cuda.is_available() else "cpu")).all()
