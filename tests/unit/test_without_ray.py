"""The no-Ray backend of the study runner (`--backend processes`) works where Ray, MLflow and Optuna are not installed
(a lent GPU machine has torch, pandas and pyarrow): a Soft-IntroVAE cell runs to the end and writes the row a sweep
would write; a rerun skips what is done; a trial killed mid-run continues from its last report."""
import os
import signal
import subprocess
import sys
import time
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

    # what a kill between writing the row and removing the checkpoint leaves; and a cut-off trial of another grid
    checkpoints = results.parent / "checkpoints"
    for left in (row["trial_id"], f"{row['trial_id']}.old", "local-of-another-grid"):
        (checkpoints / left).mkdir(parents=True)
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=environment)
    assert again.returncode == 0 and "1 already in" in again.stdout and "step 30/60" not in again.stdout
    assert len(pd.read_parquet(results)) == 1  # the finished cell kept, not run twice
    assert [p.name for p in checkpoints.iterdir()] == ["local-of-another-grid"]  # a later command may continue it


def checkpointed(sweep_dir: Path) -> bool:
    """A trial's checkpoint swapped in (not one still being written under .new)."""
    return any("." not in report.parent.name for report in (sweep_dir / "checkpoints").glob("local-*/report.json"))


def test_a_killed_processes_backend_sweep_continues_its_trial_from_the_last_checkpoint(tmp_path):
    """A real kill (SIGKILL to the sweep's process group, the trial's process with it) mid-trial; the rerun continues
    from the trial's last report and removes its checkpoints once the row is written."""
    command = [sys.executable, "-m", "sweeps.introvae_prior", "--backend", "processes", "--preset", "smoke",
               "--prior", "standard", "--steps", "3000", "--report-every", "100", "--device", "cpu", "--parallel", "1",
               "--name", "killed", "--out", str(tmp_path / "out")]
    sweep_dir = tmp_path / "out" / "introvae" / "killed"
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=environment, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not checkpointed(sweep_dir) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the group this test started, nothing else
        first.wait()
    assert checkpointed(sweep_dir), "no checkpoint within 240 s"
    assert not (sweep_dir / "results.parquet").exists()

    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=environment)
    assert again.returncode == 0, again.stderr[-2000:]
    continued_at = int(again.stdout.split("continues from its checkpoint at step ")[1].split()[0])
    assert 100 <= continued_at < 3000 and continued_at % 100 == 0
    row = pd.read_parquet(sweep_dir / "results.parquet").iloc[0]
    assert (row["status"], row["step"], row["resumed_at_step"]) == ("completed", 3000, continued_at)
    assert not any((sweep_dir / "checkpoints").iterdir())  # the finished trial's checkpoints removed
