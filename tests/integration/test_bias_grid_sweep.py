"""The smoke sweep through real Ray, real MLflow (SQLite) and the analysis, as a user runs it."""
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from analysis.__main__ import main as analysis_main
from sweeps.bias_grid import main as bias_grid_main

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smoke_sweep(local_ray, tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    uri = f"sqlite:///{root}/mlflow.db"
    code = bias_grid_main(["--preset", "smoke", "--name", "smoke-test", "--out", str(root / "results"),
                           "--mlflow-uri", uri])
    out = root / "results" / "bias_grid" / "smoke-test"
    return code, out, uri


def test_every_cell_finishes_with_a_row_and_metrics(smoke_sweep):
    code, out, _ = smoke_sweep
    assert code == 0
    table = pd.read_parquet(out / "results.parquet")
    assert sorted(zip(table["bias"], table["beta"], strict=True)) == [(0.0, 0.5), (0.0, 4.0), (5.0, 0.5), (5.0, 4.0)]
    assert (table["status"] == "completed").all()
    assert (table["step"] == 100).all()
    assert table["eval/pmi"].notna().all() and table["eval/decoder_mse"].gt(0).all()
    assert table["mlflow_run_id"].str.len().gt(0).all()


def test_one_parent_run_with_one_child_per_cell(smoke_sweep):
    _, out, uri = smoke_sweep
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("bias_grid")
    parents = client.search_runs([experiment.experiment_id], "tags.`priorsweep.sweep` = 'smoke-test'")
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    children = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 4
    table = pd.read_parquet(out / "results.parquet")
    assert {c.info.run_id for c in children} == set(table["mlflow_run_id"])
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["priorsweep.status"] == "completed"
        assert {"bias", "beta", "seed", "steps"} <= set(child.data.params)
        assert not any(k.startswith(("pid", "timestamp", "config/")) for k in child.data.metrics)
        history = client.get_metric_history(child.info.run_id, "train/loss")
        assert [m.step for m in history] == [50, 100]
        assert "eval/pmi" in child.data.metrics and "eval/r2_learned_to_true" in child.data.metrics
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"heatmap_pmi.png", "heatmap_decoder_mse.png", "results.parquet"} <= artifacts


def test_heatmaps_are_drawn_and_analysis_rebuilds_the_table_from_mlflow(smoke_sweep, tmp_path):
    _, out, uri = smoke_sweep
    for name in ("pmi", "decoder_mse", "r2_true_to_learned", "r2_learned_to_true", "active_dims"):
        assert (out / f"heatmap_{name}.png").stat().st_size > 1000
    assert analysis_main(["heatmaps", "--mlflow-uri", uri, "--experiment", "bias_grid", "--sweep", "smoke-test",
                          "--out", str(tmp_path)]) == 0
    from_mlflow = pd.read_parquet(tmp_path / "results.parquet").sort_values("trial_id").reset_index(drop=True)
    from_sweep = pd.read_parquet(out / "results.parquet").sort_values("trial_id").reset_index(drop=True)
    assert list(from_mlflow["trial_id"]) == list(from_sweep["trial_id"])
    pd.testing.assert_series_equal(from_mlflow["eval/pmi"], from_sweep["eval/pmi"], check_names=False)
    assert (tmp_path / "heatmap_pmi.png").exists()


def test_resume_of_a_finished_sweep_adds_nothing(smoke_sweep, local_ray):
    _, out, uri = smoke_sweep
    before = pd.read_parquet(out / "results.parquet")
    code = bias_grid_main(["--preset", "smoke", "--name", "smoke-test", "--resume", "--out",
                           str(out.parent.parent), "--mlflow-uri", uri])
    assert code == 0
    after = pd.read_parquet(out / "results.parquet")
    assert sorted(after["trial_id"]) == sorted(before["trial_id"])
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("bias_grid")
    assert len(client.search_runs([experiment.experiment_id], "tags.mlflow.parentRunId != ''")) == 4


def test_both_engines_give_the_same_table(smoke_sweep, tmp_path):
    """The smoke sweep ran on the population engine (the default); one model per trial gives the same cells, the
    same columns and the same numbers (to float tolerance): analysis cannot tell which engine ran."""
    _, out, _ = smoke_sweep
    assert bias_grid_main(["--preset", "smoke", "--name", "single", "--population-size", "1", "--out",
                           str(tmp_path), "--no-mlflow"]) == 0
    single = pd.read_parquet(tmp_path / "bias_grid" / "single" / "results.parquet")
    population = pd.read_parquet(out / "results.parquet")
    assert set(single.columns) == set(population.columns)
    key = ["bias", "beta", "seed"]
    single, population = (t.sort_values(key).reset_index(drop=True) for t in (single, population))
    pd.testing.assert_frame_equal(single[key], population[key])
    for metric in ("eval/pmi", "eval/decoder_mse", "eval/r2_learned_to_true", "val/neg_elbo", "train/loss"):
        assert single[metric].to_numpy() == pytest.approx(population[metric].to_numpy(), rel=2e-3), metric

    # that sweep ran without MLflow; `sync` puts it into a tracking store afterwards, as if it had been tracked
    uri = f"sqlite:///{tmp_path}/later.db"
    assert analysis_main(["sync", "--results", str(tmp_path / "bias_grid" / "single"), "--mlflow-uri", uri]) == 0
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("bias_grid").experiment_id
    children = client.search_runs([experiment], "tags.mlflow.parentRunId != ''")
    assert sorted(c.data.tags["priorsweep.trial_id"] for c in children) == sorted(single["trial_id"])
    for child in children:
        assert [m.step for m in client.get_metric_history(child.info.run_id, "train/loss")] == [50, 100]
        assert child.data.tags["priorsweep.status"] == "completed" and child.data.params["hidden_width"] == "32"
    synced = pd.read_parquet(tmp_path / "bias_grid" / "single" / "results.parquet")
    assert set(synced["mlflow_run_id"]) == {c.info.run_id for c in children}  # the table points at the new runs


def test_several_seeds_train_in_one_population_per_bias_and_match_one_model_per_trial(local_ray, tmp_path):
    """By default a population holds every β × seed of one bias (seeds with independent data); its cells equal
    those of one model per trial."""
    common = ["--preset", "smoke", "--seeds", "0", "1", "--out", str(tmp_path), "--no-mlflow"]
    assert bias_grid_main([*common, "--name", "together"]) == 0
    assert bias_grid_main([*common, "--name", "alone", "--population-size", "1"]) == 0
    together, alone = (pd.read_parquet(tmp_path / "bias_grid" / name / "results.parquet") for name in
                       ("together", "alone"))
    assert together["trial_id"].str.rsplit("-", n=1).str[0].nunique() == 2  # one trial per bias, 4 members each
    key = ["bias", "seed", "beta"]
    together, alone = (t.sort_values(key).reset_index(drop=True) for t in (together, alone))
    pd.testing.assert_frame_equal(together[key], alone[key])
    assert sorted(set(together["seed"])) == [0, 1]
    for metric in ("eval/pmi", "eval/decoder_mse", "eval/pmi_baseline", "val/neg_elbo", "train/loss"):
        assert together[metric].to_numpy() == pytest.approx(alone[metric].to_numpy(), rel=2e-3), metric
    seed_0, seed_1 = (together[together["seed"] == s]["train/loss"].to_numpy() for s in (0, 1))
    assert not seed_0 == pytest.approx(seed_1, rel=1e-3)  # independent data per seed


def test_a_diverging_population_member_ends_diverged_alone(local_ray, tmp_path):
    """β = 1e38 makes that member's β·KL overflow float32 to inf at once; the member beside it in the same
    population (β = 0.5, same seed and data) must train to the end, and the sweep must still succeed."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert bias_grid_main(["--preset", "smoke", "--name", "diverge", "--out", str(tmp_path / "results"),
                           "--mlflow-uri", uri, "--biases", "0", "--betas", "0.5", "1e38", "--seeds", "0"]) == 0
    table = pd.read_parquet(tmp_path / "results" / "bias_grid" / "diverge" / "results.parquet")
    status = dict(zip(table["beta"], table["status"], strict=True))
    assert status == {0.5: "completed", 1e38: "diverged"}
    by_beta = table.set_index("beta")
    assert by_beta.loc[0.5, "step"] == 100 and by_beta.loc[1e38, "diverged_at_step"] >= 1
    client = MlflowClient(tracking_uri=uri)
    child_status = {beta: client.get_run(by_beta.loc[beta, "mlflow_run_id"]).data.tags["priorsweep.status"]
                    for beta in (0.5, 1e38)}
    assert child_status == {0.5: "completed", 1e38: "diverged"}


def test_a_truncated_results_table_is_rebuilt_on_resume_from_the_sweeps_state(smoke_sweep, local_ray, tmp_path,
                                                                              capsys):
    """A results.parquet cut short (a full disk, a copy that stopped) is kept aside and its rows rebuilt from Tune's
    saved state on --resume: the same cells with the same values, one warning, no traceback, nothing rerun."""
    import shutil

    _, out, _ = smoke_sweep
    root = tmp_path / "results"
    shutil.copytree(out.parent, root / "bias_grid")  # a copy of the finished sweep (its Tune state included)
    table = root / "bias_grid" / "smoke-test" / "results.parquet"
    before = pd.read_parquet(table).sort_values("trial_id").reset_index(drop=True)
    table.write_bytes(table.read_bytes()[:200])  # truncated mid-file
    code = bias_grid_main(["--preset", "smoke", "--name", "smoke-test", "--resume", "--out", str(root),
                           "--storage", str(root / "bias_grid" / "_tune"), "--no-mlflow"])
    assert code == 0
    assert "warning: " in capsys.readouterr().err
    after = pd.read_parquet(table).sort_values("trial_id").reset_index(drop=True)
    assert list(after["trial_id"]) == list(before["trial_id"])
    pd.testing.assert_series_equal(after["eval/pmi"], before["eval/pmi"])
    assert list(table.parent.glob("results.parquet.unreadable-*"))  # the damaged file kept, not deleted
