"""Soft-IntroVAE with learned priors on the 2D density benchmark (spec: introvae.md; docs/introvae.md)."""
import itertools
from dataclasses import replace

from sweeps.errors import SweepError
from sweeps.study import Axis, OptunaSearch, Preset, Study

DESCRIPTION = """Soft-IntroVAE with learned priors (standard, mixture of Gaussians, VampPrior) as a Ray Tune sweep.

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

ALL_2D = ("8gaussians", "2spirals", "checkerboard", "rings")
ALL_PRIORS = ("standard", "mog", "vamp")
# the prior paper's grid search over the Soft-IntroVAE weights (β_neg as a multiple of β_kl)
BETA_GRID = {"beta_rec": (0.05, 0.2, 0.3, 0.4, 0.8, 1.0), "beta_kl": (0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0),
             "beta_neg_multiple": (1, 2, 3, 4, 5)}
SEARCHED = tuple(BETA_GRID)

PRESETS = {
    "smoke": Preset(
        "seconds: 8Gaussians × {standard, mog} × 1 seed, a tiny MLP, 60 steps (tests)",
        axes={"dataset": ("8gaussians",), "prior": ("standard", "mog"), "seed": (0,)},
        trial={"steps": 60, "num_vae": 30, "batch_size": 64, "hidden_width": 32, "report_every": 30,
               "num_components": 8, "gnelbo_grid": 32, "gnelbo_data_points": 256, "eval_points": 500,
               "density_image": 16},
        search_samples=4,
    ),
    "demo": Preset(
        "minutes: 4 datasets × 3 priors × 1 seed, 2,000 steps (500 warm-up), K = 64",
        axes={"dataset": ALL_2D, "prior": ALL_PRIORS, "seed": (0,)},
        trial={"steps": 2_000, "num_vae": 500, "gnelbo_grid": 256},
    ),
    "paper2d": Preset(
        "the reference protocol: 30,000 steps, batch 512, K = 64, 5 seeds (use --seeds 0 for one)",
        axes={"dataset": ALL_2D, "prior": ALL_PRIORS, "seed": (0, 1, 2, 3, 4)},
        trial={"steps": 30_000, "num_vae": 2_000, "batch_size": 512, "num_components": 64},
        search_samples=60,
    ),
}


def cell_label(config: dict) -> str:
    label = f"{config['dataset']} {config['prior']} seed={config['seed']}"
    shown = SEARCHED if config["prior"] == "standard" else (*SEARCHED, "num_components")
    for key in shown:
        if isinstance(config.get(key), (int, float)) and not isinstance(config.get(key), bool):
            label += f" {key}={config[key]:g}"
    return label


class DefineByRunSpace:
    """Optuna space with conditional parameters: K and the prior's options only where the prior has them.

    A class, not a closure: Tune pickles the searcher (and this space with it) into the sweep's restore state.
    """

    def __init__(self, axes: dict, constants: dict):
        self.priors, self.constants = list(axes["prior"]), constants

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


def introspective_grace(config: dict, reports: int) -> int:
    """Compare trials only once they are well into the introspective stage."""
    warmup_reports = config["num_vae"] // config["report_every"]
    return min(reports, warmup_reports + max(1, (reports - warmup_reports) // 10))


def beta_grid_then_seeds(sweep) -> int:
    """--search grid: the prior paper's β grid at the first seed, then the lowest-KL setting of each dataset × prior
    with every seed (a sweep of its own, NAME-seeds)."""
    first_seed = sweep.axes["seed"][0]
    grid = [{**cell, **dict(zip(SEARCHED, values, strict=True))}
            for cell in sweep.cells if cell["seed"] == first_seed for values in itertools.product(*BETA_GRID.values())]
    frame, tracking = sweep.run(grid)
    if len(sweep.axes["seed"]) == 1:
        return sweep.finish(frame, tracking)
    sweep.finish(frame, tracking)  # phase 1 is a sweep of its own, with its own report
    settings, configs = best_with_all_seeds(frame, sweep)
    return sweep.finish(*sweep.run(configs, settings=settings), settings=settings)


def best_with_all_seeds(frame, sweep):
    """(settings of NAME-seeds, its cells): the lowest-KL β setting of each dataset × prior, with every seed."""
    done = frame[frame["status"] == "completed"]
    if done.empty:
        raise SweepError("no grid trial completed, so there is no best setting to run with every seed")
    best = done.loc[done.groupby(["dataset", "prior"])[STUDY.metric].idxmin()]
    seeds = sweep.axes["seed"]
    configs = [{**sweep.base, **{k: row[k] for k in ("dataset", "prior", *SEARCHED)}, "seed": s}
               for _, row in best.iterrows() for s in seeds]
    print(f"\nbest β settings of {len(best)} dataset × prior cells, now with seeds {list(seeds)}")
    settings = replace(sweep.settings, name=sweep.settings.name + "-seeds",
                       out_dir=sweep.settings.out_dir.with_name(sweep.settings.out_dir.name + "-seeds"))
    return settings, configs


def add_engine_flags(group) -> None:
    group.add_argument("--population-size", default="auto",
                       help="runs trained together per trial, stacked (population engine; one prior kind per "
                            "population): the cells of each prior in groups of this size. Default auto: on a GPU "
                            "(--gpus-per-trial > 0 or --device cuda) every cell of a prior in one population, which "
                            "--gpus-per-trial then sizes the device for; on a CPU one run per trial, as stacking is "
                            "no faster there (benchmarks/RESULTS.md)")


def population_size(args, cells_of_prior: int) -> int:
    """Runs per trial for a prior with this many cells: --population-size, or what `auto` means where the trials
    run. A search mode that builds its own trials has no such flag: one run each."""
    value = getattr(args, "population_size", None)
    if value is None:
        return 1
    if value == "auto":
        on_gpu = (getattr(args, "gpus_per_trial", 0) or 0) > 0 or getattr(args, "device", None) == "cuda"
        return max(cells_of_prior, 1) if on_gpu else 1
    try:
        size = int(value)
    except ValueError:
        size = 0
    if size < 1:
        raise SweepError(f"--population-size must be >= 1 (or auto), got {value}")
    return size


def population_trials(cells: list[dict], axes: dict, args) -> list[dict]:
    """Cells as trials: one each, or per prior kind in populations (trainables/introvae_population.py) of
    `population_size`, each member keeping the keys in which it differs from the rest."""
    sizes = {prior: population_size(args, sum(cell["prior"] == prior for cell in cells)) for prior in axes["prior"]}
    if all(size == 1 for size in sizes.values()):
        return cells  # one run per trial, in the grid's order (dataset by dataset)
    trials = []
    for prior, size in sizes.items():
        same_prior = [cell for cell in cells if cell["prior"] == prior]
        for start in range(0, len(same_prior), size):
            group = same_prior[start:start + size]
            shared = {k: v for k, v in group[0].items() if all(cell.get(k) == v for cell in group)}
            trials.append(group[0] if len(group) == 1 else
                          {**shared, "members": [{k: v for k, v in c.items() if k not in shared} for c in group]})
    return trials


STUDY = Study(
    name="introvae",
    description=DESCRIPTION,
    cell_config="trainables.introvae",
    trainable="trainables.introvae_population:train_introvae_2d",
    trial_config="trainables.introvae_population",
    axes=(
        Axis("dataset", "--dataset", str, "2D datasets (several allowed)", choices=ALL_2D),
        Axis("prior", "--prior", str, "priors (several allowed)", choices=ALL_PRIORS),
        Axis("seed", "--seeds", int, "seeds per setting"),
    ),
    presets=PRESETS,
    default_preset="demo",
    label=cell_label,
    metric="eval/kl",
    mode="min",
    headline=("eval/kl", "eval/jsd", "eval/gnelbo", "eval/active_modes"),
    progress=("eval/kl", "eval/jsd", "train/loss"),
    report_columns=("dataset", "prior", "seed", "status", "step", "eval/kl", "eval/jsd", "eval/gnelbo",
                    "eval/active_modes", "wall_time_s"),
    draw="analysis.tables:write_introvae_tables",
    summary_file="table_2d.md",
    artifacts=("table_2d.*", "*.png", "results.parquet"),
    grid_search="none",
    grid_help="every dataset × prior × seed at the dataset's reference betas and full budget (default)",
    optuna=OptunaSearch(DefineByRunSpace, grace_reports=introspective_grace, searched_axes=("prior",),
                        help="TPE + ASHA on eval/kl at one dataset and seed, over the betas and the prior's options"),
    searches={"grid": ("the paper's β grid at the first seed, then the best setting of each dataset × prior with "
                       "every seed", "sweeps.studies.introvae_2d:beta_grid_then_seeds")},
    renamed_flags={"steps": ("--iterations",)},
    add_engine_flags=add_engine_flags,
    trials=population_trials,
)
