"""Analysis from a results table alone: seed means, failed trials left out, heatmaps and tables written."""
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


def test_missing_results_is_one_clear_error(tmp_path, capsys):
    assert analysis_main(["heatmaps", "--results", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip().startswith("error: no results table at")
