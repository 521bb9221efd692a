"""The run cores and benchmarks/run_cells.py work where Ray is not installed (a lent GPU machine has torch, pandas
and pyarrow but no Ray): a Soft-IntroVAE cell runs to the end and writes the row a sweep would write."""
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
MISSING = ("ray", "mlflow", "optuna")


def test_run_cells_trains_a_cell_to_the_end_without_ray(tmp_path):
    # packages that raise ImportError, first on the path of the script and of the processes it spawns
    missing = tmp_path / "missing"
    for name in MISSING:
        (missing / name).mkdir(parents=True)
        (missing / name / "__init__.py").write_text(f"raise ImportError('no {name} on this machine')")
    command = [sys.executable, str(ROOT / "benchmarks" / "run_cells.py"), "--preset", "smoke", "--prior", "mog",
               "--device", "cpu", "--parallel", "1", "--name", "no-ray", "--out", str(tmp_path / "out")]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(missing)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "step 60/60" in done.stdout
    row = pd.read_parquet(tmp_path / "out" / "results.parquet").iloc[0]
    assert (row["study"], row["sweep"], row["status"], row["prior"], row["step"]) == \
        ("introvae", "no-ray", "completed", "mog", 60)
    assert row["eval/kl"] > 0 and row["eval/gnelbo"] > 0 and len(row["plot/density"]) == 16 * 16
