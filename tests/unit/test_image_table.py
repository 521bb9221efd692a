"""The image table averages seeds per dataset × prior × K × r_entropy (mean ± std/√n), leaves failed runs out, and
`python -m analysis images` writes it; results of another study are one error line."""
import math

import pandas as pd

from analysis.__main__ import main as analysis_main
from analysis.image_tables import image_table


def image_results() -> pd.DataFrame:
    rows = []
    for prior, k, fids in (("standard", 10, (30.0, 34.0)), ("mog", 10, (20.0, 26.0)), ("mog", 100, (25.0, 25.0))):
        for seed, fid in enumerate(fids):
            rows.append({"study": "introvae_images", "dataset": "mnist", "prior": prior, "num_components": k,
                         "r_entropy": 0.0, "seed": seed, "status": "completed", "eval/fid_gen": fid,
                         "eval/fid_rec": fid / 2, "eval/fid_images": 1000, "eval/probe_svm": 0.9})
    rows.append({**rows[-1], "seed": 2, "status": "diverged", "eval/fid_gen": 1e6})  # left out
    return pd.DataFrame(rows)


def test_the_image_table_averages_seeds_with_their_standard_error():
    table = image_table(image_results()).set_index(["prior", "num_components"])
    assert list(table.index) == [("standard", 10), ("mog", 10), ("mog", 100)]  # the priors in their order
    mog = table.loc[("mog", 10)]
    assert mog["seeds"] == 2 and mog["FID gen"] == 23.0
    assert math.isclose(mog["FID gen ±"], pd.Series([20.0, 26.0]).std() / math.sqrt(2))
    assert table.loc[("mog", 100), "FID gen"] == 25.0  # the diverged third seed does not count
    assert table.loc[("standard", 10), "probe SVM %"] == 90.0


def test_analysis_images_writes_the_table_and_refuses_other_results(tmp_path, capsys):
    image_results().to_parquet(tmp_path / "results.parquet")
    assert analysis_main(["images", "--results", str(tmp_path)]) == 0
    text = (tmp_path / "table_images.md").read_text()
    assert "FID on 1,000 images" in text and "23 ± 3" in text
    assert (tmp_path / "fid.png").exists()
    pd.DataFrame({"study": ["bias_grid"], "bias": [0.0], "beta": [1.0], "status": ["completed"]}).to_parquet(
        tmp_path / "other.parquet")
    assert analysis_main(["images", "--results", str(tmp_path / "other.parquet"), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: `images` needs results with columns dataset")
