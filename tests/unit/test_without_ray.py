"""The no-Ray backend of the study runner (`--backend processes`) works where Ray, MLflow and Optuna are not installed
(a lent GPU machine has torch, pandas and pyarrow): a Soft-IntroVAE cell runs to the end and writes the row a sweep
would write; a rerun skips what is done."""
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
MISSING = ("ray", "mlflow", "optuna")


def test_the_processes_backend_trains_a_cell_to_the_end_without_ray(tmp_path):
    # packages that raise ImportError, first on the path of the script and of the processes it spawns
    missing = tmp_path / "missing"
    for name in MISSING:
        (missing / name).mkdir(parents=True)
        (missing / name / "__init__.py").write_text(f"raise ImportError('no {name} on this machine')")
    command = [sys.executable, "-m", "sweeps.introvae_prior", "--backend", "processes", "--preset", "smoke",
               "--prior", "mog", "--device", "cpu", "--parallel", "1", "--name", "no-ray", "--out",
               str(tmp_path / "out")]
    environment = {**os.environ, "PYTHONPATH": f"{missing}{os.pathsep}{ROOT}"}
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=environment)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "step 60/60" in done.stdout
    results = tmp_path / "out" / "introvae" / "no-ray" / "results.parquet"
    row = pd.read_parquet(results).iloc[0]
    assert (row["study"], row["sweep"], row["status"], row["prior"], row["step"]) == \
        ("introvae", "no-ray", "completed", "mog", 60)
    assert row["eval/kl"] > 0 and row["eval/gnelbo"] > 0 and len(row["plot/density"]) == 16 * 16

    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=environment)
    assert again.returncode == 0 and "1 already in" in again.stdout and "step 30/60" not in again.stdout
    assert len(pd.read_parquet(results)) == 1  # the finished cell kept, not run twice
