"""The image study through the real runner: an images-smoke sweep (scikit-learn's digits, real Ray Tune, MLflow on
SQLite, real FID and probe) lands one row and one MLflow child per cell with its table; missing data is one error
line before anything starts."""
import math

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from sweeps.introvae_images import main as images_main

pytestmark = pytest.mark.integration


def test_an_images_smoke_sweep_lands_every_cell_with_fid_probe_and_table(local_ray, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "results"
    assert images_main(["--preset", "images-smoke", "--name", "smoke", "--out", str(out), "--mlflow-uri", uri,
                        "--data-root", str(tmp_path / "data")]) == 0
    results = out / "introvae_images" / "smoke"
    frame = pd.read_parquet(results / "results.parquet")
    assert sorted(frame["prior"]) == ["mog", "standard"] and (frame["status"] == "completed").all()
    assert (frame["step"] == 2 * (512 // 64)).all()  # 2 epochs of whole batches
    for _, row in frame.iterrows():
        assert row["eval/fid_images"] == 32 and 0 < row["eval/fid_gen"] < math.inf and row["eval/fid_rec"] > 0
        assert 0 <= row["eval/probe_svm"] <= 1 and 0 <= row["eval/probe_knn5"] <= 1
        assert len(row["plot/images"]) == (4 if row["prior"] == "mog" else 3)  # + the decoded prior modes
    mog = frame[frame["prior"] == "mog"].iloc[0]
    assert 1 <= mog["eval/active_modes"] <= 10
    table = (results / "table_images.md").read_text()
    assert "FID on 32 images" in table and "mog" in table and "standard" in table
    assert (results / "fid.png").exists() and (results / "report.html").exists()

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("introvae_images")
    children = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("mlflow.parentRunId")]
    assert sorted(r.data.tags["mlflow.runName"] for r in children) == ["digits mog K=10 r=0 seed=0",
                                                                       "digits standard seed=0"]
    assert all(r.data.metrics["eval/fid_gen"] > 0 for r in children)
    assert "fid_gen" in capsys.readouterr().out  # the study's headline on each finished cell's line


def test_missing_image_data_is_one_error_before_anything_starts(tmp_path, capsys):
    out = tmp_path / "results"
    code = images_main(["--preset", "mnist", "--name", "nodata", "--out", str(out), "--no-mlflow", "--data-root",
                        str(tmp_path / "empty")])
    assert code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "missing train-images-idx3-ubyte" in error[0] and "prepare-mnist" in error[0]
    assert not out.exists()  # nothing started, nothing written
