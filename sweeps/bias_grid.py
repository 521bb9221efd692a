#!/usr/bin/env python
"""The β × training-bias study as a Ray Tune sweep.

Trains one β-VAE per (bias, β, seed) cell on biased 3×3 grid images, measures how well its latents recover the
true ones (PMI, decoder MSE, R² both ways, active latents), logs every trial to MLflow as a child of one parent run,
writes results/bias_grid/<name>/results.parquet and draws β × bias heatmaps.

  python sweeps/bias_grid.py --preset demo                 # the main job (~10 min on 2 cores)
  python sweeps/bias_grid.py --preset smoke                # seconds
  python sweeps/bias_grid.py --preset paper --biases 0 2.5 5 --seeds 0
  python sweeps/bias_grid.py --search optuna --biases 2.5 --betas 1   # tune lr / width / batch size first
  ray submit docker/cluster.yaml sweeps/bias_grid.py -- --preset paper --address auto --gpus-per-trial 0.25

Grids run every cell at full budget (no early stopping): heatmap cells must be comparable. `--search optuna` tunes
the nuisance parameters with Optuna (TPE) + ASHA on held-out negative ELBO and prints the flags to pass to the grid.
"""
import argparse
import sys

from sweeps.cli import (
    add_common_arguments,
    add_device_argument,
    add_search_arguments,
    exit_on_bad_input,
    settings_from_args,
    trial_overrides,
)
from sweeps.errors import SweepError
from sweeps.presets import BIAS_GRID_PRESETS

STUDY = "bias_grid"
SEARCH_METRIC, SEARCH_MODE = "val/neg_elbo", "min"
# trial settings a flag may override (flag dest = config key)
TRIAL_FLAGS = ("steps", "batch_size", "learning_rate", "hidden_width", "hidden_depth", "latent_dim",
               "likelihood_variance", "report_every", "train_set_size", "device")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="presets:\n" + "\n".join(f"  {k:6s} {p.description}" for k, p in BIAS_GRID_PRESETS.items()),
    )
    parser.add_argument("--preset", choices=sorted(BIAS_GRID_PRESETS), default="demo",
                        help="grid and budget to start from (default: demo); flags below override it")
    grid = parser.add_argument_group("the grid (override the preset)")
    grid.add_argument("--biases", type=float, nargs="+", help="training biases μ, e.g. --biases 0 2.5 5")
    grid.add_argument("--betas", type=float, nargs="+", help="KL weights β, e.g. --betas 0.1 1 8")
    grid.add_argument("--seeds", type=int, nargs="+", help="seeds per cell, e.g. --seeds 0 1 2")
    trial = parser.add_argument_group("trial settings (override the preset; defaults in trainables/bias_grid.py)")
    trial.add_argument("--steps", type=int, help="optimiser steps per model (paper: 10000)")
    trial.add_argument("--batch-size", type=int, help="images per step (default 64)")
    trial.add_argument("--learning-rate", type=float, help="Adam learning rate (default 1e-3)")
    trial.add_argument("--hidden-width", type=int, help="MLP width (default 256)")
    trial.add_argument("--hidden-depth", type=int, help="MLP hidden layers (default 2)")
    trial.add_argument("--latent-dim", type=int, help="latent size (default 9)")
    trial.add_argument("--likelihood-variance", type=float,
                       help="σ² of the Gaussian likelihood; recon = SSE/(2σ²), so σ² rescales β (default 0.25, "
                            "the data's noise variance, making β = 1 the true ELBO)")
    trial.add_argument("--report-every", type=int, help="steps per report and checkpoint (default 500)")
    trial.add_argument("--train-set-size", type=int, help="0: fresh images every step (default); N: fixed set")
    add_device_argument(trial)
    search = parser.add_argument_group("search instead of a grid")
    search.add_argument("--search", choices=("grid", "optuna"), default="grid",
                        help="grid: every cell at full budget (default); optuna: TPE + ASHA over learning rate, "
                             "width and batch size at one (bias, β), on held-out negative ELBO")
    add_search_arguments(search)
    engine = parser.add_argument_group("engine")
    engine.add_argument("--population-size", type=int, default=None,
                        help="models trained together per trial (population engine). Default: every β × seed of "
                             "one bias, one trial per bias. Smaller: whole seeds (all their β) while it holds at "
                             "least the number of β, else the β of one seed in groups of this size; 1: one model "
                             "per trial")
    add_common_arguments(parser)
    return parser


def trial_label(config: dict) -> str:
    label = f"bias={config['bias']:g} beta={config['beta']:g} seed={config['seed']}"
    if not isinstance(config.get("learning_rate"), (int, float)):
        return label
    return f"{label} lr={config['learning_rate']:.2g} width={config['hidden_width']} batch={config['batch_size']}"


def search_space(tune) -> dict:
    """The nuisance parameters Optuna tunes (the study's axes stay fixed)."""
    return {
        "learning_rate": tune.loguniform(1e-4, 3e-3),
        "hidden_width": tune.choice([64, 128, 256, 512]),
        "batch_size": tune.choice([32, 64, 128, 256]),
    }


@exit_on_bad_input
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    preset = BIAS_GRID_PRESETS[args.preset]
    biases = tuple(args.biases or preset.biases)
    betas = tuple(args.betas or preset.betas)
    seeds = tuple(args.seeds if args.seeds is not None else preset.seeds)
    base = trial_overrides(preset.trial, args, TRIAL_FLAGS)

    # heavy imports after argument parsing, so --help and argument errors are instant
    from ray import tune

    from sweeps.runner import finish_sweep, run_sweep
    from trainables.bias_grid import train_bias_grid, validate_config
    from trainables.bias_grid_population import train_bias_grid_population
    from trainables.bias_grid_population import validate_config as validate_population

    if args.search == "optuna":
        if len(biases) != 1 or len(betas) != 1 or len(seeds) != 1:
            raise SweepError("--search optuna tunes at one cell: give one --biases, one --betas and one --seeds "
                             "value (e.g. --biases 2.5 --betas 1 --seeds 0)")
        space = search_space(tune)
        extremes = [{"learning_rate": 1e-4, "hidden_width": 512, "batch_size": 256}]
        candidates = [{**base, "bias": biases[0], "beta": betas[0], "seed": seeds[0], **e} for e in extremes]
    else:
        space = {}
        candidates = [{**base, "bias": b, "beta": beta, "seed": s} for b in biases for beta in betas for s in seeds]
    for candidate in candidates:  # every trial's config is checked before anything starts
        validate_config(candidate)
    full = validate_config(candidates[0])
    population_size = len(betas) * len(seeds) if args.population_size is None else args.population_size
    if population_size < 1:
        raise SweepError(f"--population-size must be >= 1, got {population_size}")
    beta_groups, seed_groups = population_split(list(betas), list(seeds), population_size)
    use_population = args.search == "grid" and population_size > 1

    sweep_params = {"preset": args.preset, "search": args.search, "biases": list(biases), "betas": list(betas),
                    "seeds": list(seeds), "population_size": population_size if use_population else 1,
                    **{f"trial.{k}": v for k, v in base.items()}}
    settings = settings_from_args(args, STUDY, {"priorsweep.preset": args.preset, "priorsweep.search": args.search,
                                                "priorsweep.engine": "population" if use_population else "single"})
    if args.search == "optuna":
        from sweeps.optuna_search import optuna_asha_in_sweep

        num_samples = args.num_samples or preset.search_samples
        reports = -(-full["steps"] // full["report_every"])  # ASHA's budget is counted in reports
        searcher, scheduler, ledger = optuna_asha_in_sweep(settings, max_t=reports,
                                                           grace_period=max(1, reports // 4), seed=args.search_seed)
        param_space = {**base, "bias": biases[0], "beta": betas[0], "seed": seeds[0], **space}
        frame, tracking = run_sweep(settings, train_bias_grid, param_space, trial_label, num_samples, sweep_params,
                                    search_alg=searcher, scheduler=scheduler, early_stopped=ledger,
                                    metric=SEARCH_METRIC, mode=SEARCH_MODE, num_samples=num_samples,
                                    full_config=validate_config)
        draw, artifacts = report_search, ("results.parquet",)
    else:
        if use_population:  # one trial per (bias, group of seeds, group of β): grid rows on one device
            for seed_group in seed_groups:
                for beta_group in beta_groups:
                    validate_population({**base, "bias": biases[0], "seeds": seed_group, "betas": beta_group})
            trainable = train_bias_grid_population
            param_space = {**base, "bias": tune.grid_search(list(biases)), "seeds": tune.grid_search(seed_groups),
                           "betas": tune.grid_search(beta_groups)}
        else:
            trainable = train_bias_grid
            param_space = {**base, "bias": tune.grid_search(list(biases)), "seed": tune.grid_search(list(seeds)),
                           "beta": tune.grid_search(list(betas))}
        frame, tracking = run_sweep(settings, trainable, param_space, trial_label, len(candidates), sweep_params,
                                    full_config=validate_config)
        draw, artifacts = report_grid, ("heatmap_*.png", "summary.*", "results.parquet")
    return finish_sweep(frame, settings, tracking, artifacts, draw)


def population_split(betas: list, seeds: list, size: int) -> tuple[list[list], list[list]]:
    """(groups of β, groups of seeds) whose products are populations of at most `size` members: whole seeds (all
    their β) when `size` holds every β, else one seed each with the β in groups of `size`."""
    if size >= len(betas):
        per_population = size // len(betas)
        return [betas], [seeds[i:i + per_population] for i in range(0, len(seeds), per_population)]
    return [betas[i:i + size] for i in range(0, len(betas), size)], [[seed] for seed in seeds]


def report_grid(frame, settings) -> None:
    from analysis.heatmaps import write_heatmaps

    paths = write_heatmaps(frame, settings.out_dir)
    print((settings.out_dir / "summary.md").read_text().split("###")[1].strip())
    print(f"heatmaps: {', '.join(p.name for p in paths)} in {settings.out_dir}")


def report_search(frame, settings) -> None:
    finished = frame[frame["status"] == "completed"].sort_values(SEARCH_METRIC)
    pruned = int((frame["status"] == "pruned").sum())
    print(f"\n{len(frame)} Optuna trials, {pruned} pruned by ASHA; study in {settings.out_dir / 'optuna.db'} "
          f"(optuna-dashboard sqlite:///{settings.out_dir / 'optuna.db'})")
    if finished.empty:
        print("no trial completed its full budget")
        return
    best = finished.iloc[0]
    print(f"best held-out negative ELBO {best[SEARCH_METRIC]:.3f}; pass to the grid:")
    print(f"  --learning-rate {best['learning_rate']:.3g} --hidden-width {int(best['hidden_width'])} "
          f"--batch-size {int(best['batch_size'])}")


if __name__ == "__main__":
    sys.exit(main())
