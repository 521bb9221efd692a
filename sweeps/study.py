"""A study, declared as data: what the generic runner (sweeps/study_runner.py) needs to build its command line, run
it on Ray (or without, sweeps/local_backend.py), track it and draw its results.

A study module in `sweeps/studies/` defines one `STUDY = Study(...)`; the registry (`sweeps/studies/__init__.py`)
collects them. Code is named by "module:attribute" strings where importing it would cost time (torch, analysis),
so `--help` and a bad flag answer at once; a test may give the objects themselves.
"""
import importlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Axis:
    """One axis of the study's grid: a cell config key with its list flag (`--betas 0.1 1 8`)."""
    key: str  # the cell's config key, e.g. "beta"
    flag: str  # e.g. "--betas"
    kind: type  # float, int or str: each value's type on the command line
    help: str
    choices: tuple | None = None

    @property
    def dest(self) -> str:  # the argparse destination, also the name of the axis in the sweep's parameters
        return self.flag.removeprefix("--").replace("-", "_")


@dataclass(frozen=True)
class Preset:
    description: str
    axes: dict[str, tuple]  # axis key -> its values
    trial: dict = field(default_factory=dict)  # trial config values (the study's FIELDS)
    search_samples: int = 20  # --search optuna: number of Optuna trials


def quarter_of_budget(config: dict, reports: int) -> int:
    return max(1, reports // 4)


@dataclass(frozen=True)
class OptunaSearch:
    """TPE + ASHA at one cell: `space(axes, base)` is the define-by-run space (a picklable callable of an Optuna
    trial that suggests parameters and returns the constants); `grace_reports(full config, reports)` the reports a
    trial runs before ASHA may stop it. Axes in `searched_axes` may list several values (the space picks one)."""
    space: str | Callable
    grace_reports: Callable[[dict, int], int] = quarter_of_budget
    searched_axes: tuple[str, ...] = ()
    help: str = "TPE + ASHA at one cell of the grid"


@dataclass(frozen=True)
class Study:
    name: str  # the results folder OUT/<name>, MLflow experiment, `study` column
    description: str  # the --help text
    cell_config: str  # module with the cell's FIELDS and validate_config(cell) -> full config
    trainable: str | Callable  # Ray Tune function trainable of one trial config; takes sink= outside Ray
    trial_config: str | None  # module whose validate_config checks a trial config (None: the cell module's)
    axes: tuple[Axis, ...]
    presets: dict[str, Preset]
    default_preset: str
    label: Callable[[dict], str]  # a cell's name in progress lines and tables
    metric: str  # the search metric, and the one the summary reports best
    mode: str  # "min" or "max"
    headline: tuple[str, ...]  # metrics a finished cell's line shows (where present)
    progress: tuple[str, ...]  # metrics a running trial's progress line shows
    report_columns: tuple[str, ...]  # report.html's per-cell table: config keys and metrics
    draw: str | None = None  # "module:function(frame, out_dir) -> paths", the study's figures and tables
    summary_file: str | None = None  # a markdown file `draw` writes, printed at the end
    artifacts: tuple[str, ...] = ("results.parquet",)  # the sweep's files logged to its parent run
    grid_search: str = "grid"  # the --search value that runs every cell at full budget (the default)
    grid_help: str = "every cell at full budget"
    optuna: OptunaSearch | None = None
    # further --search values: name -> (help, "module:function(context) -> int")
    searches: dict[str, tuple[str, str]] = field(default_factory=dict)
    renamed_flags: dict[str, tuple[str, ...]] = field(default_factory=dict)  # config key -> old flags kept working
    check_cells: str | Callable | None = None  # "module:function(cells)": raises ConfigError on what is missing
    budget_key: str = "steps"  # the config key of a trial's budget, reported every `report_every` of its unit
    # (cell, axes) -> True for a combination that repeats another (a setting the cell's other values ignore)
    redundant: Callable[[dict, dict], bool] | None = None
    # engine: how cells become trials (several cells per trial on a population engine) and its flags
    add_engine_flags: Callable | None = None
    trials: Callable[[list[dict], dict, Any], list[dict]] | None = None  # (cells, axes, args) -> trial configs

    def cells(self, axes: dict[str, tuple], base: dict) -> list[dict]:
        """Every combination of the axes' values (but the redundant), first axis slowest, over the trial settings."""
        keys = [axis.key for axis in self.axes]
        cells = [{**base, **dict(zip(keys, values, strict=True))}
                 for values in itertools.product(*(axes[key] for key in keys))]
        return [cell for cell in cells if not (self.redundant and self.redundant(cell, axes))]

    def trial_configs(self, cells: list[dict], axes: dict[str, tuple], args) -> list[dict]:
        return self.trials(cells, axes, args) if self.trials else cells

    def search_names(self) -> tuple[str, ...]:
        return (self.grid_search, *(("optuna",) if self.optuna else ()), *self.searches)


def resolve(target: str | Callable) -> Any:
    """"package.module:attribute" -> the attribute; "package.module" -> the module; anything else as given."""
    if not isinstance(target, str):
        return target
    module, _, attribute = target.partition(":")
    loaded = importlib.import_module(module)
    return getattr(loaded, attribute) if attribute else loaded
