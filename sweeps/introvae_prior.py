#!/usr/bin/env python
"""Soft-IntroVAE with learned priors (standard, mixture of Gaussians, VampPrior) as a Ray Tune sweep.

  python sweeps/introvae_prior.py --preset smoke                       # seconds
  python sweeps/introvae_prior.py --preset paper2d --seeds 0           # 4 datasets × 3 priors, reference betas
  python sweeps/introvae_prior.py --preset paper2d --dataset rings --prior mog vamp --seeds 0 1 2
  python sweeps/introvae_prior.py --preset paper2d --dataset 8gaussians --search optuna --num-samples 60
  python sweeps/introvae_prior.py --preset paper2d --search grid        # the paper's β grid, then 5 seeds of the best

Without --search, every dataset × prior × seed runs at the dataset's reference (β_kl, β_rec, β_neg) and full budget.
`--search optuna` tunes β_rec, β_kl, β_neg (as a multiple of β_kl) and, where the prior has them, K, learnable
weights, r_entropy and the VampPrior's conversion, with TPE + ASHA on eval/kl (trials ASHA stops reach Optuna as
PRUNED). `--search grid` runs the prior paper's grid (β_rec × β_kl × β_neg/β_kl) at one seed, then the best
(lowest KL) setting of each dataset × prior with every --seeds value.
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
from sweeps.presets import ALL_2D, ALL_PRIORS, BETA_GRID, INTROVAE_PRESETS

STUDY = "introvae"
SEARCH_METRIC, SEARCH_MODE = "eval/kl", "min"
TRIAL_FLAGS = ("iterations", "num_vae", "batch_size", "learning_rate", "num_components", "r_entropy", "beta_rec",
               "beta_kl", "beta_neg", "prior_mode", "report_every", "gnelbo_grid", "device")
SEARCHED = ("beta_rec", "beta_kl", "beta_neg_multiple")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="presets:\n" + "\n".join(f"  {k:8s} {p.description}" for k, p in INTROVAE_PRESETS.items()),
    )
    parser.add_argument("--preset", choices=sorted(INTROVAE_PRESETS), default="demo",
                        help="datasets, priors, seeds and budget to start from (default: demo)")
    grid = parser.add_argument_group("what to run (override the preset)")
    grid.add_argument("--dataset", nargs="+", choices=ALL_2D, help="2D datasets (several allowed)")
    grid.add_argument("--prior", nargs="+", choices=ALL_PRIORS, help="priors (several allowed)")
    grid.add_argument("--seeds", type=int, nargs="+", help="seeds per setting")
    trial = parser.add_argument_group("trial settings (override the preset; defaults in trainables/introvae.py)")
    trial.add_argument("--iterations", type=int, help="training iterations (paper2d: 30000)")
    trial.add_argument("--num-vae", type=int, help="warm-up iterations before the introspective stage (2000)")
    trial.add_argument("--batch-size", type=int, help="points per iteration (512)")
    trial.add_argument("--learning-rate", type=float, help="Adam learning rate of all players (2e-4)")
    trial.add_argument("--num-components", type=int, help="K of the mixture priors (64)")
    trial.add_argument("--r-entropy", type=float, help="responsibility regularisation weight (0)")
    trial.add_argument("--beta-rec", type=float, help="β_rec (default: the dataset's reference)")
    trial.add_argument("--beta-kl", type=float, help="β_kl (default: the dataset's reference)")
    trial.add_argument("--beta-neg", type=float, help="β_neg (default: the dataset's reference)")
    trial.add_argument("--prior-mode", choices=("trainable", "fixed"), help="the prior in stage 2 (trainable)")
    trial.add_argument("--report-every", type=int, help="iterations per report and checkpoint (500)")
    trial.add_argument("--gnelbo-grid", type=int, help="gnELBO grid resolution (1024; 0 skips it)")
    add_device_argument(trial)
    search = parser.add_argument_group("search")
    search.add_argument("--search", choices=("none", "grid", "optuna"), default="none",
                        help="none: reference betas (default); grid: the paper's β grid then seeds of the best; "
                             "optuna: TPE + ASHA on eval/kl, one dataset")
    add_search_arguments(search)
    add_common_arguments(parser)
    return parser


def trial_label(config: dict) -> str:
    label = f"{config['dataset']} {config['prior']} seed={config['seed']}"
    shown = ("beta_rec", "beta_kl", "beta_neg_multiple")
    if config["prior"] != "standard":
        shown += ("num_components",)
    for key in shown:
        if isinstance(config.get(key), (int, float)) and not isinstance(config.get(key), bool):
            label += f" {key}={config[key]:g}"
    return label


class DefineByRunSpace:
    """Optuna space with conditional parameters: K and the prior's options only where the prior has them.

    A class, not a closure: Tune pickles the searcher (and this space with it) into the sweep's restore state.
    """

    def __init__(self, priors: tuple[str, ...], constants: dict):
        self.priors, self.constants = list(priors), constants

    def __call__(self, trial) -> dict:
        prior = trial.suggest_categorical("prior", self.priors)
        suggested = {"prior", "beta_rec", "beta_kl", "beta_neg_multiple"}
        trial.suggest_float("beta_rec", 0.05, 1.0, log=True)
        trial.suggest_float("beta_kl", 0.05, 1.0, log=True)
        trial.suggest_int("beta_neg_multiple", 1, 5)
        if prior != "standard":
            trial.suggest_categorical("num_components", [8, 16, 32, 64])
            trial.suggest_categorical("learnable_weights", [True, False])
            trial.suggest_categorical("r_entropy", [0.0, 1.0, 10.0])
            suggested |= {"num_components", "learnable_weights", "r_entropy"}
        if prior == "vamp":
            trial.suggest_categorical("vamp_to_mog", [True, False])
            suggested.add("vamp_to_mog")
        # Ray merges the returned constants over the suggestions: leave out what was just suggested
        return {k: v for k, v in self.constants.items() if k not in suggested}


@exit_on_bad_input
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    preset = INTROVAE_PRESETS[args.preset]
    datasets = tuple(args.dataset or preset.datasets)
    priors = tuple(args.prior or preset.priors)
    seeds = tuple(args.seeds if args.seeds is not None else preset.seeds)
    base = trial_overrides(preset.trial, args, TRIAL_FLAGS)

    from ray import tune

    from sweeps.runner import finish_sweep, run_sweep
    from trainables.introvae import train_introvae, validate_config

    cells = [{**base, "dataset": d, "prior": p, "seed": s} for d in datasets for p in priors for s in seeds]
    if args.search == "grid":
        cells = [{**c, "beta_rec": r, "beta_kl": k, "beta_neg_multiple": m} for c in cells
                 for r in BETA_GRID["beta_rec"] for k in BETA_GRID["beta_kl"] for m in BETA_GRID["beta_neg_multiple"]
                 if c["seed"] == seeds[0]]
    if args.search == "optuna" and len(datasets) != 1:
        raise SweepError("--search optuna tunes one dataset at a time: give one --dataset")
    for cell in cells:  # every trial's config is checked before anything starts
        validate_config(cell)
    full = validate_config(cells[0])

    sweep_params = {"preset": args.preset, "search": args.search, "datasets": list(datasets),
                    "priors": list(priors), "seeds": list(seeds), **{f"trial.{k}": v for k, v in base.items()}}
    settings = settings_from_args(args, STUDY, {"priorsweep.preset": args.preset, "priorsweep.search": args.search})
    axes = {"dataset": list(datasets), "prior": list(priors), "seed": list(seeds)}
    if args.search == "optuna":
        from sweeps.optuna_search import optuna_asha_in_sweep

        num_samples = args.num_samples or preset.search_samples
        reports = -(-full["iterations"] // full["report_every"])
        warmup_reports = full["num_vae"] // full["report_every"]
        # compare trials only once they are well into the introspective stage
        grace = min(reports, warmup_reports + max(1, (reports - warmup_reports) // 10))
        constants = {**base, "dataset": datasets[0], "seed": seeds[0]}
        searcher, scheduler, ledger = optuna_asha_in_sweep(
            settings, max_t=reports, grace_period=grace, seed=args.search_seed,
            define_by_run=DefineByRunSpace(priors, constants), metric=SEARCH_METRIC, mode=SEARCH_MODE)
        frame, tracking = run_sweep(settings, train_introvae, {}, trial_label, num_samples, sweep_params,
                                    search_alg=searcher, scheduler=scheduler, early_stopped=ledger,
                                    metric=SEARCH_METRIC, mode=SEARCH_MODE, num_samples=num_samples,
                                    full_config=validate_config)
    elif args.search == "none":
        # the cells in their listed order, dataset by dataset (a Tune grid would vary the alphabetically first axis,
        # the dataset, fastest), so each dataset's priors finish together and fill their rows of the table
        space, listed = listed_cells(cells)
        frame, tracking = run_sweep(settings, train_introvae, space, trial_label, len(cells), sweep_params,
                                    search_alg=listed, num_samples=len(cells), full_config=validate_config)
    else:
        space = {**base, **{k: tune.grid_search(v) for k, v in axes.items()}}
        space.update({k: tune.grid_search(list(v)) for k, v in BETA_GRID.items()}, seed=seeds[0])
        frame, tracking = run_sweep(settings, train_introvae, space, trial_label, len(cells), sweep_params,
                                    full_config=validate_config)
        if args.search == "grid" and len(seeds) > 1:  # phase 1 is a sweep of its own, with its own report
            finish_sweep(frame, settings, tracking, SWEEP_ARTIFACTS, write_tables)
            settings, (frame, tracking) = run_best_with_all_seeds(frame, base, seeds, settings, sweep_params)
    return finish_sweep(frame, settings, tracking, SWEEP_ARTIFACTS, write_tables)


SWEEP_ARTIFACTS = ("table_2d.*", "*.png", "results.parquet")  # the parent run's files (report.html added)


def run_best_with_all_seeds(frame, base, seeds, settings, sweep_params):
    """Phase 2 of --search grid: the lowest-KL β setting of each dataset × prior, with every seed."""
    from dataclasses import replace

    from sweeps.runner import run_sweep
    from trainables.introvae import train_introvae, validate_config

    done = frame[frame["status"] == "completed"]
    if done.empty:
        raise SweepError("no grid trial completed, so there is no best setting to run with every seed")
    best = done.loc[done.groupby(["dataset", "prior"])[SEARCH_METRIC].idxmin()]
    configs = [{**base, **{k: row[k] for k in ("dataset", "prior", *SEARCHED)}, "seed": s}
               for _, row in best.iterrows() for s in seeds]
    print(f"\nbest β settings of {len(best)} dataset × prior cells, now with seeds {list(seeds)}")
    seeds_settings = replace(settings, name=settings.name + "-seeds",
                             out_dir=settings.out_dir.with_name(settings.out_dir.name + "-seeds"))
    space, listed = listed_cells(configs)
    return seeds_settings, run_sweep(seeds_settings, train_introvae, space, trial_label, len(configs), sweep_params,
                                     search_alg=listed, num_samples=len(configs), full_config=validate_config)


def listed_cells(cells: list[dict]):
    """(param space, search algorithm) that run exactly `cells`, in their order (with num_samples=len(cells)).

    Tune accepts a listed point only for keys its param space has, so every key becomes a choice over the values
    the cells give it.
    """
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    values: dict[str, list] = {}
    for cell in cells:
        for key, value in cell.items():
            if value not in values.setdefault(key, []):
                values[key].append(value)
    return {k: tune.choice(v) for k, v in values.items()}, BasicVariantGenerator(points_to_evaluate=cells)


def write_tables(frame, settings) -> None:
    from analysis.tables import write_introvae_tables

    paths = write_introvae_tables(frame, settings.out_dir)
    table = settings.out_dir / "table_2d.md"
    if table.exists():
        print(table.read_text())
    print(f"tables and figures: {', '.join(p.name for p in paths)} in {settings.out_dir}")


if __name__ == "__main__":
    sys.exit(main())
