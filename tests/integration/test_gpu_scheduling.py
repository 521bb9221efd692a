"""GPU scheduling with a logical GPU (`ray.init(num_gpus=…)`): fractions are honoured, and without CUDA the
trials fall back to the CPU instead of failing."""
import json

import pandas as pd
import pytest
import ray
import torch

from sweeps.bias_grid import main as bias_grid_main
from tracking.journal import JOURNAL_FILE

pytestmark = pytest.mark.integration


@pytest.fixture
def ray_with_one_logical_gpu():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_half_gpu_trials_share_one_gpu_at_the_same_time_and_fall_back_to_cpu(ray_with_one_logical_gpu, tmp_path):
    """Two population trials asking 0.5 GPU each on a one-GPU Ray: both are granted GPU 0 and run at once (their
    report times interleave); without CUDA each trains on the CPU instead of failing. 8,000 steps: a trial lasts
    well beyond the seconds Tune takes to start the next one (at 1,500 steps a fast machine finished the first
    before the second began)."""
    code = bias_grid_main(["--preset", "smoke", "--name", "gpu", "--out", str(tmp_path), "--no-mlflow",
                           "--cpus-per-trial", "0.5", "--gpus-per-trial", "0.5", "--steps", "8000",
                           "--report-every", "1000"])
    assert code == 0
    out = tmp_path / "bias_grid" / "gpu"
    table = pd.read_parquet(out / "results.parquet")
    assert len(table) == 4 and (table["status"] == "completed").all()
    assert (table["gpu_ids"] == "0").all()  # both trials were granted a share of the one GPU
    assert (table["device"] == ("cuda" if torch.cuda.is_available() else "cpu")).all()
    # at the same time: each trial's first report comes before the other's last
    times: dict[str, list[int]] = {}
    for line in (out / JOURNAL_FILE).read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "metrics":
            times.setdefault(event["cell"].rsplit("-", 1)[0], []).append(event["time"])
    assert len(times) == 2
    first, second = times.values()
    assert min(first) < max(second) and min(second) < max(first)
