"""Analysis from a results table alone: seed means, failed trials left out, heatmaps and tables written."""
import numpy as np
import pandas as pd
import pytest

from analysis.__main__ import main as analysis_main
from analysis.heatmaps import bias_grid_summary, pivot


def results_table() -> pd.DataFrame:
    rows = []
    for bias in (0.0, 2.5):
        for beta in (0.5, 4.0):
            for seed in (0, 1):
                collapsed = bias == 2.5 and beta == 4.0
                rows.append({"bias": bias, "beta": beta, "seed": seed, "status": "completed",
                             "eval/pmi": 0.01 * (1 + seed) + bias, "eval/decoder_mse": 0.1 * beta,
                             "eval/r2_true_to_learned": 0.9, "eval/r2_learned_to_true": 0.8 - 0.1 * seed,
                             "eval/pmi_lstsq": 0.005, "eval/active_dims": 0.0 if collapsed else 9.0,
                             "eval/collapsed": float(collapsed), "eval/pmi_baseline": 0.1, "val/neg_elbo": 250.0})
    rows.append({**rows[0], "seed": 2, "status": "diverged", "eval/pmi": float("nan")})
    return pd.DataFrame(rows)


def test_summary_averages_seeds_and_counts_failures():
    summary = bias_grid_summary(results_table())
    pmi = pivot(summary, "eval/pmi")
    assert pmi.loc[0.0, 0.5] == pytest.approx(0.015)  # mean of seeds 0 and 1; the diverged seed 2 is left out
    assert pmi.loc[2.5, 4.0] == pytest.approx(2.515)
    cell = summary[(summary["bias"] == 0.0) & (summary["beta"] == 0.5)].iloc[0]
    assert cell["trials"] == 2 and cell["failed"] == 1
    assert cell["eval/r2_learned_to_true:std"] == pytest.approx(0.0707107, rel=1e-5)
    assert pivot(summary, "eval/collapsed").loc[2.5, 4.0] == 1.0


def test_heatmaps_command_writes_pngs_and_tables(tmp_path):
    results_table().to_parquet(tmp_path / "results.parquet")
    assert analysis_main(["heatmaps", "--results", str(tmp_path)]) == 0
    for name in ("pmi", "decoder_mse", "r2_true_to_learned", "r2_learned_to_true", "active_dims"):
        assert (tmp_path / f"heatmap_{name}.png").stat().st_size > 1000
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert len(summary) == 4
    tables = (tmp_path / "summary.md").read_text()
    assert "### PMI" in tables and "### Decoder MSE" in tables


def test_sweeps_run_in_pieces_combine_into_one_summary(tmp_path, capsys):
    table = results_table()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    table[table["seed"] == 0].to_parquet(tmp_path / "a" / "results.parquet")
    table[table["seed"] != 0].to_parquet(tmp_path / "b" / "results.parquet")
    args = ["heatmaps", "--results", str(tmp_path / "a"), str(tmp_path / "b")]
    assert analysis_main(args) == 2  # two sources, no --out: where would the combined table go?
    assert capsys.readouterr().err.startswith("error: several --results")
    assert analysis_main([*args, "--out", str(tmp_path / "both")]) == 0
    summary = pd.read_csv(tmp_path / "both" / "summary.csv")
    assert summary.loc[(summary["bias"] == 0.0) & (summary["beta"] == 0.5), "eval/pmi"].item() == \
        pytest.approx(0.015)  # seed 0 from one sweep, seed 1 from the other
    assert len(pd.read_parquet(tmp_path / "both" / "results.parquet")) == len(table)


def test_missing_results_is_one_clear_error(tmp_path, capsys):
    assert analysis_main(["heatmaps", "--results", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip().startswith("error: no results table at")


def test_report_is_one_self_contained_page_with_figures_tables_and_run_links(tmp_path):
    import base64

    from analysis.load import write_sweep_record
    from analysis.report import write_report

    trials = pd.DataFrame({"trial_id": ["t0", "t1"], "bias": [0.0, 5.0], "beta": [1.0, 1.0],
                           "status": ["completed", "diverged"], "eval/pmi": [0.01, float("nan")],
                           "mlflow_run_id": ["run0", ""]})
    trials.to_parquet(tmp_path / "results.parquet")
    pd.DataFrame({"bias": [0.0], "pmi": [0.01]}).to_csv(tmp_path / "summary.csv", index=False)
    png = b"\x89PNG\r\n\x1a\n not really an image"
    (tmp_path / "heatmap_pmi.png").write_bytes(png)
    write_sweep_record(tmp_path, {"study": "bias_grid", "name": "demo-x", "status": "FINISHED",
                                  "mlflow_uri": "http://127.0.0.1:5000", "experiment_id": "3", "parent_run_id": "p9",
                                  "params": {"preset": "demo"}, "command": "sweeps/bias_grid.py --preset demo"})
    page = write_report(tmp_path).read_text()
    assert base64.b64encode(png).decode() in page  # embedded, not linked
    assert "http://127.0.0.1:5000/#/experiments/3/runs/run0" in page  # the trial's run
    assert "http://127.0.0.1:5000/#/experiments/3/runs/p9" in page  # the parent
    assert page.count("href=\"http://127.0.0.1:5000/#/experiments/3/runs/") == 2  # parent and t0; t1 has no run
    assert "1 completed" in page and "1 diverged" in page and "summary" in page and "--preset demo" in page
    assert "src=\"http" not in page and "<script" not in page  # opens offline, runs nothing


def test_image_mosaic_puts_each_image_in_its_tile_between_white_gaps():
    from analysis.trial_figures import image_mosaic

    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 5  # 2 rows of 3 images of 2×2 pixels
    mosaic = image_mosaic(images)
    assert mosaic.shape == (2 * 3 - 1, 3 * 3 - 1)
    for i in range(2):
        for j in range(3):
            np.testing.assert_array_equal(mosaic[3 * i:3 * i + 2, 3 * j:3 * j + 2], images[i, j].reshape(2, 2))
    assert (mosaic[2, :] == 255).all() and (mosaic[:, 2] == 255).all() and (mosaic[:, 5] == 255).all()


def test_results_of_the_other_study_are_one_clear_error_not_a_key_error(tmp_path, capsys):
    introvae = pd.DataFrame([{"study": "introvae", "dataset": "rings", "prior": "mog", "seed": 0,
                              "status": "completed", "eval/kl": 0.5}])
    introvae.to_parquet(tmp_path / "results.parquet", index=False)
    assert analysis_main(["heatmaps", "--results", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: `heatmaps` needs results with columns bias, beta") and "analysis tables" in error
    results_table().assign(study="bias_grid").to_parquet(tmp_path / "results.parquet", index=False)
    assert analysis_main(["tables", "--results", str(tmp_path)]) == 2
    assert "no 'dataset'" in capsys.readouterr().err and not list(tmp_path.glob("table_2d.*"))


def test_a_cell_run_again_in_a_later_piece_counts_once_as_its_last_run(tmp_path, capsys):
    """A protocol piece redone after a fix: its cells replace the earlier piece's (whatever either's status), so the
    2D table averages each (dataset, prior) over distinct seeds; rows of one piece all count (a search may repeat a
    setting); pieces written before a setting existed still match on the settings they share."""
    def piece(name: str, rows: list[tuple], **more) -> str:
        (tmp_path / name).mkdir()
        pd.DataFrame([{"study": "introvae", "sweep": name, "dataset": "rings", "prior": prior, "seed": seed,
                       "status": status, "eval/kl": kl, **more} for prior, seed, status, kl in rows]
                     ).to_parquet(tmp_path / name / "results.parquet", index=False)
        return str(tmp_path / name)

    before_fix = piece("s0", [("standard", 0, "completed", 2.0), ("mog", 0, "completed", 9.0),
                              ("vamp", 0, "completed", 7.0), ("vamp", 1, "completed", 5.0)])
    later = piece("s1", [("standard", 1, "completed", 4.0), ("mog", 0, "completed", 1.0), ("mog", 1, "completed", 3.0),
                         ("mog", 1, "completed", 5.0), ("vamp", 0, "diverged", float("nan"))], r_entropy=0.0)
    assert analysis_main(["tables", "--results", before_fix, later, "--out", str(tmp_path / "both")]) == 0
    assert "its last run counts: prior=mog seed=0; prior=vamp seed=0" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "both" / "table_2d.csv").set_index("prior")
    assert table.loc["mog", "seeds"] == 3 and table.loc["mog", "KL"] == pytest.approx(3.0)  # 1, 3, 5; not 9
    assert table.loc["standard", "seeds"] == 2 and table.loc["standard", "KL"] == pytest.approx(3.0)
    assert table.loc["vamp", "seeds"] == 1 and table.loc["vamp", "KL"] == pytest.approx(5.0)  # seed 0 diverged
    assert len(pd.read_parquet(tmp_path / "both" / "results.parquet")) == 7


def test_a_learned_prior_is_lower_or_higher_only_beyond_two_standard_errors_of_the_difference(tmp_path):
    """The paper's claim read off the seeds: Δ = learned − standard mean, se = √(se_l² + se_s²); 'lower' or
    'higher' only beyond ±2 se, else 'level'; no verdict from one seed (no spread)."""
    standard = [1.0, 1.2, 0.8, 1.1, 0.9]  # mean 1.0, se √(0.025/5) ≈ 0.0707
    kl = {"standard": standard, "mog": [k - 0.5 for k in standard],  # Δ −0.5, se 0.1: lower
          "vamp": [k + 0.1 for k in standard]}  # Δ +0.1 < 2 × 0.1: level
    rows = [{"dataset": "rings", "prior": prior, "seed": seed, "status": "completed", "eval/kl": value,
             "eval/jsd": 0.3 + 0.01 * seed * (prior == "vamp")}
            for prior, values in kl.items() for seed, value in enumerate(values)]
    rows += [{"dataset": "2spirals", "prior": prior, "seed": 0, "status": "completed", "eval/kl": 9.0,
              "eval/jsd": 0.3} for prior in ("standard", "mog")]
    (tmp_path / "sweep").mkdir()
    pd.DataFrame(rows).to_parquet(tmp_path / "sweep" / "results.parquet", index=False)
    assert analysis_main(["tables", "--results", str(tmp_path / "sweep"), "--out", str(tmp_path / "out")]) == 0

    comparison = pd.read_csv(tmp_path / "out" / "prior_comparison.csv").set_index(["dataset", "prior"])
    assert comparison.loc[("rings", "mog"), "Δ KL"] == pytest.approx(-0.5)
    assert comparison.loc[("rings", "mog"), "Δ KL ±"] == pytest.approx(0.1)
    assert comparison.loc[("rings", "mog"), "KL: learned is"] == "lower"
    assert comparison.loc[("rings", "vamp"), "KL: learned is"] == "level"
    assert comparison.loc[("rings", "vamp"), "JSD (textbook): learned is"] == "higher"  # +0.02 ± 0.0071
    assert comparison.loc[("rings", "mog"), "JSD (textbook): learned is"] == "level"  # Δ 0, se 0
    assert comparison.loc[("2spirals", "mog"), "KL: learned is"] not in ("lower", "level", "higher")
    summary = (tmp_path / "out" / "prior_comparison.md").read_text()
    assert "- mog: matches or beats the standard prior's KL on 1 of 1 datasets" in summary
