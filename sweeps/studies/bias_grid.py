"""The β × training-bias study (spec: bias_grid.md; docs/bias_grid.md).

One β-VAE per (bias, β, seed) cell on biased 3×3 grid images; how well its latents recover the true ones (PMI,
decoder MSE, R² both ways, active latents), drawn as β × bias heatmaps. Cells train as populations: every β × seed
of one bias in one trial by default (`--population-size` to split them; 1: one model per trial).
"""
from sweeps.errors import SweepError
from sweeps.study import Axis, OptunaSearch, Preset, Study

DESCRIPTION = """The β × training-bias study as a Ray Tune sweep.

Trains one β-VAE per (bias, β, seed) cell on biased 3×3 grid images, measures how well its latents recover the
true ones (PMI, decoder MSE, R² both ways, active latents), logs every cell to MLflow as a child of one parent run,
writes results/bias_grid/<name>/results.parquet, β × bias heatmaps and report.html.

  python sweeps/bias_grid.py --preset demo                 # the main job (~10 min on 2 cores)
  python sweeps/bias_grid.py --preset smoke                # seconds
  python sweeps/bias_grid.py --preset paper --biases 0 2.5 5 --seeds 0
  python sweeps/bias_grid.py --search optuna --biases 2.5 --betas 1   # tune lr / width / batch size first
  ray submit docker/cluster.yaml sweeps/bias_grid.py -- --preset paper --address auto --gpus-per-trial 0.25

Grids run every cell at full budget (no early stopping): heatmap cells must be comparable. `--search optuna` tunes
the nuisance parameters with Optuna (TPE) + ASHA on held-out negative ELBO and prints the flags to pass to the grid.
"""

ALL_BIASES = tuple(0.5 * i for i in range(11))  # 0, 0.5, …, 5.0 (the write-up's grid)
ALL_BETAS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # ours: the write-up names β but not its values

PRESETS = {
    "smoke": Preset(
        "seconds: 2 biases × 2 β × 1 seed, a tiny MLP, 100 steps (tests and a first check)",
        axes={"bias": (0.0, 5.0), "beta": (0.5, 4.0), "seed": (0,)},
        trial={"steps": 100, "report_every": 50, "hidden_width": 32, "heldout_size": 256},
        search_samples=4,
    ),
    "demo": Preset(
        "the main job: every bias × every β, 1 seed, 3,000 steps — the trend in minutes on 2 cores",
        axes={"bias": ALL_BIASES, "beta": ALL_BETAS, "seed": (0,)},
        trial={"steps": 3_000, "report_every": 500},
        search_samples=20,
    ),
    "paper": Preset(
        "the study: 11 biases × 7 β × 3 seeds × 10,000 steps (231 models)",
        axes={"bias": ALL_BIASES, "beta": ALL_BETAS, "seed": (0, 1, 2)},
        trial={"steps": 10_000, "report_every": 500},
        search_samples=50,
    ),
}


def cell_label(config: dict) -> str:
    label = f"bias={config['bias']:g} beta={config['beta']:g} seed={config['seed']}"
    if not isinstance(config.get("learning_rate"), (int, float)):
        return label
    return f"{label} lr={config['learning_rate']:.2g} width={config['hidden_width']} batch={config['batch_size']}"


class NuisanceSpace:
    """The nuisance parameters Optuna tunes at one cell (the study's axes stay fixed). A class, not a closure: Tune
    pickles the searcher, and this space with it, into the sweep's restore state."""

    def __init__(self, axes: dict, constants: dict):
        self.constants = constants

    def __call__(self, trial) -> dict:
        trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True)
        trial.suggest_categorical("hidden_width", [64, 128, 256, 512])
        trial.suggest_categorical("batch_size", [32, 64, 128, 256])
        suggested = {"learning_rate", "hidden_width", "batch_size"}
        return {k: v for k, v in self.constants.items() if k not in suggested}


def add_engine_flags(group) -> None:
    group.add_argument("--population-size", type=int, default=None,
                       help="models trained together per trial (population engine). Default: every β × seed of "
                            "one bias, one trial per bias. Smaller: whole seeds (all their β) while it holds at "
                            "least the number of β, else the β of one seed in groups of this size; 1: one model "
                            "per trial")


def population_split(betas: list, seeds: list, size: int) -> tuple[list[list], list[list]]:
    """(groups of β, groups of seeds) whose products are populations of at most `size` members: whole seeds (all
    their β) when `size` holds every β, else one seed each with the β in groups of `size`."""
    if size >= len(betas):
        per_population = size // len(betas)
        return [betas], [seeds[i:i + per_population] for i in range(0, len(seeds), per_population)]
    return [betas[i:i + size] for i in range(0, len(betas), size)], [[seed] for seed in seeds]


def population_trials(cells: list[dict], axes: dict, args) -> list[dict]:
    """One trial per (bias, group of seeds, group of β): rows of the grid trained together on one device."""
    betas, seeds = list(axes["beta"]), list(axes["seed"])
    size = getattr(args, "population_size", None)
    size = len(betas) * len(seeds) if size is None else size
    if size < 1:
        raise SweepError(f"--population-size must be >= 1, got {size}")
    beta_groups, seed_groups = population_split(betas, seeds, size)
    base = {k: v for k, v in cells[0].items() if k not in ("bias", "beta", "seed")}
    return [{**base, "bias": bias, "seeds": seed_group, "betas": beta_group}
            for bias in axes["bias"] for seed_group in seed_groups for beta_group in beta_groups]


STUDY = Study(
    name="bias_grid",
    description=DESCRIPTION,
    cell_config="trainables.bias_grid",
    trainable="trainables.bias_grid_population:train_bias_grid_population",
    trial_config="trainables.bias_grid_population",
    axes=(
        Axis("bias", "--biases", float, "training biases μ, e.g. --biases 0 2.5 5"),
        Axis("beta", "--betas", float, "KL weights β, e.g. --betas 0.1 1 8"),
        Axis("seed", "--seeds", int, "seeds per cell, e.g. --seeds 0 1 2"),
    ),
    presets=PRESETS,
    default_preset="demo",
    label=cell_label,
    metric="val/neg_elbo",
    mode="min",
    headline=("eval/pmi", "eval/decoder_mse", "eval/r2_learned_to_true", "val/neg_elbo"),
    progress=("val/neg_elbo", "train/loss"),
    report_columns=("bias", "beta", "seed", "status", "step", "eval/pmi", "eval/decoder_mse",
                    "eval/r2_learned_to_true", "eval/active_dims", "val/neg_elbo", "wall_time_s"),
    draw="analysis.heatmaps:write_heatmaps",
    summary_file="summary.md",
    artifacts=("heatmap_*.png", "summary.*", "results.parquet"),
    grid_help="every cell at full budget (default)",
    optuna=OptunaSearch(NuisanceSpace, help="TPE + ASHA over learning rate, width and batch size at one (bias, β), "
                        "on held-out negative ELBO"),
    add_engine_flags=add_engine_flags,
    trials=population_trials,
)
