"""Named presets per study: the grid (axes) and the trial settings. Every value can be overridden by a flag."""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BiasGridPreset:
    description: str
    biases: tuple[float, ...]
    betas: tuple[float, ...]
    seeds: tuple[int, ...]
    trial: dict = field(default_factory=dict)  # trial config values (see trainables/bias_grid.py FIELDS)
    search_samples: int = 20  # --search optuna: number of Optuna trials


ALL_BIASES = tuple(0.5 * i for i in range(11))  # 0, 0.5, …, 5.0 (the write-up's grid)
ALL_BETAS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # ours: the write-up names β but not its values

BIAS_GRID_PRESETS = {
    "smoke": BiasGridPreset(
        "seconds: 2 biases × 2 β × 1 seed, a tiny MLP, 100 steps (tests and a first check)",
        biases=(0.0, 5.0), betas=(0.5, 4.0), seeds=(0,),
        trial={"steps": 100, "report_every": 50, "hidden_width": 32, "heldout_size": 256},
        search_samples=4,
    ),
    "demo": BiasGridPreset(
        "the main job: every bias × every β, 1 seed, 3,000 steps — the trend in minutes on 2 cores",
        biases=ALL_BIASES, betas=ALL_BETAS, seeds=(0,),
        trial={"steps": 3_000, "report_every": 500},
        search_samples=20,
    ),
    "paper": BiasGridPreset(
        "the study: 11 biases × 7 β × 3 seeds × 10,000 steps (231 models)",
        biases=ALL_BIASES, betas=ALL_BETAS, seeds=(0, 1, 2),
        trial={"steps": 10_000, "report_every": 500},
        search_samples=50,
    ),
}
