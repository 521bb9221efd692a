"""The Soft-IntroVAE sweep through real Ray, MLflow and Optuna: tables, a define-by-run search with pruning,
and a diverging trial that ends with its status while the sweep goes on."""
import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from sweeps.introvae_prior import main as introvae_main

pytestmark = pytest.mark.integration


def test_smoke_sweep_writes_table_figure_and_runs(local_ray, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert introvae_main(["--preset", "smoke", "--prior", "standard", "mog", "vamp", "--name", "s",
                          "--out", str(tmp_path), "--mlflow-uri", uri, "--progress-every", "0"]) == 0
    # running trials show their step out of the budget, rate and time left at every report
    progress = [line for line in capsys.readouterr().out.splitlines() if "steps/s" in line]
    assert any("8gaussians mog seed=0 num_components=8: step 30/60 (50%)" in line and "left" in line
               and "eval/kl" in line for line in progress), progress
    out = tmp_path / "introvae" / "s"
    table = pd.read_parquet(out / "results.parquet")
    assert sorted(table["prior"]) == ["mog", "standard", "vamp"] and (table["status"] == "completed").all()
    assert table["eval/gnelbo"].gt(0).all() and table["eval/kl"].notna().all()
    assert table.loc[table["prior"] != "standard", "eval/active_modes"].between(1, 8).all()
    assert len(table["plot/density"].iloc[0]) == 16 * 16
    assert (out / "densities.png").stat().st_size > 1000
    assert "| 8gaussians | mog" in (out / "table_2d.md").read_text()
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("introvae")
    children = client.search_runs([experiment.experiment_id], "tags.mlflow.parentRunId != ''")
    assert len(children) == 3
    history = client.get_metric_history(children[0].info.run_id, "eval/kl")
    assert [m.step for m in history] == [30, 60]


def test_diverging_trials_end_with_their_status_and_step_and_the_sweep_finishes(local_ray, tmp_path):
    # a learning rate of 1e6 overflows every trial within a few iterations: each ends `diverged` at its step, none
    # is retried or errors, and the sweep ends normally. (That a diverging run leaves the runs beside it alone is
    # checked where one can diverge alone: population members, tests/unit/test_introvae_population.py and
    # test_bias_grid_sweep.py's diverging member.)
    assert introvae_main(["--preset", "smoke", "--prior", "standard", "--dataset", "8gaussians", "rings",
                          "--learning-rate", "1e6", "--name", "nan", "--out", str(tmp_path), "--no-mlflow",
                          "--max-failures", "0"]) == 0
    table = pd.read_parquet(tmp_path / "introvae" / "nan" / "results.parquet")
    assert len(table) == 2
    assert (table["status"] == "diverged").all() and table["step"].between(1, 60).all()
    assert (table["diverged_at_step"] == table["step"]).all()


def test_define_by_run_search_prunes_and_keeps_conditional_parameters(local_ray, tmp_path):
    assert introvae_main(["--preset", "smoke", "--search", "optuna", "--prior", "standard", "mog", "--num-samples",
                          "8", "--iterations", "240", "--num-vae", "30", "--report-every", "30", "--name", "tpe",
                          "--max-concurrent-trials", "1", "--out", str(tmp_path), "--no-mlflow"]) == 0
    out = tmp_path / "introvae" / "tpe"
    table = pd.read_parquet(out / "results.parquet")
    study = optuna.load_study(study_name="tpe", storage=f"sqlite:///{out / 'optuna.db'}")
    assert len(study.trials) == len(table) == 8
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert len(pruned) == (table["status"] == "pruned").sum() >= 1
    for trial in study.trials:
        has_k = "num_components" in trial.params
        assert has_k == (trial.params["prior"] != "standard")  # K only where the prior has it
        assert 1 <= trial.params["beta_neg_multiple"] <= 5
        row = table[table["beta_rec"] == trial.params["beta_rec"]]
        assert len(row) == 1  # each trial ran with exactly the values Optuna suggested …
        if has_k:  # … including K, not the preset's constant
            assert row["num_components"].iloc[0] == trial.params["num_components"]


def test_grid_search_phase_two_runs_each_cells_best_betas_with_every_seed(local_ray, tmp_path):
    """Phase 2 of --search grid, from a phase-1 table: the lowest-KL β setting per dataset × prior, run once per
    seed, in a sweep of its own."""
    from sweeps.studies.introvae_2d import STUDY, best_with_all_seeds
    from sweeps.study_runner import prepare

    phase_one = pd.DataFrame({
        "dataset": ["8gaussians"] * 3, "prior": ["standard"] * 3, "status": ["completed", "completed", "diverged"],
        "beta_rec": [0.2, 1.0, 0.05], "beta_kl": [0.5, 1.0, 0.05], "beta_neg_multiple": [2, 1, 5],
        "eval/kl": [3.0, 1.5, float("nan")]})
    sweep = prepare(STUDY, ["--preset", "smoke", "--search", "grid", "--seeds", "0", "1", "--name", "grid",
                            "--out", str(tmp_path), "--no-mlflow"])
    seeds_settings, configs = best_with_all_seeds(phase_one, sweep)
    frame, tracking = sweep.run(configs, settings=seeds_settings)
    tracking.close("FINISHED")
    assert seeds_settings.name == "grid-seeds"
    assert sorted(frame["seed"]) == [0, 1] and (frame["status"] == "completed").all()
    assert (frame["beta_rec"] == 1.0).all() and (frame["beta_kl"] == 1.0).all()
    assert (frame["beta_neg_multiple"] == 1).all()


def test_a_population_sweep_gives_every_cell_its_row_run_and_history(local_ray, tmp_path):
    """--population-size 2: per prior, the two seeds train stacked in one trial (trainables/introvae_population.py);
    the table, MLflow and the 2D table still have one row and one child run per cell."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert introvae_main(["--preset", "smoke", "--prior", "standard", "mog", "--seeds", "0", "1",
                          "--population-size", "2", "--name", "p", "--out", str(tmp_path), "--mlflow-uri", uri]) == 0
    out = tmp_path / "introvae" / "p"
    table = pd.read_parquet(out / "results.parquet")
    assert sorted(zip(table["prior"], table["seed"], strict=True)) == [("mog", 0), ("mog", 1), ("standard", 0),
                                                                       ("standard", 1)]
    assert (table["status"] == "completed").all() and table["eval/kl"].notna().all()
    assert table["trial_id"].str.rsplit("-", n=1).str[0].nunique() == 2  # two trials, one per prior
    # members differ in seed, so their models (and their figures of merit) differ
    assert table.groupby("prior")["eval/kl"].nunique().eq(2).all()
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("introvae")
    children = client.search_runs([experiment.experiment_id], "tags.mlflow.parentRunId != ''")
    assert sorted(c.data.tags["priorsweep.trial_id"] for c in children) == sorted(table["trial_id"])
    for child in children:
        assert [m.step for m in client.get_metric_history(child.info.run_id, "eval/kl")] == [30, 60]
        assert child.data.params["seed"] in ("0", "1")
