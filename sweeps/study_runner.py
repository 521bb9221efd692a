"""The generic runner: a study's command line built from its declaration (sweeps/study.py), and the sweep it asks for.

Grid flags come from the study's axes, trial flags from its FIELDS (type, choices, default and help in one place),
search and engine flags from what it declares; `main(study, argv)` checks everything before anything starts, then
runs the cells on Ray Tune (sweeps/runner.py) or, with `--backend processes`, without Ray (sweeps/local_backend.py).
Nothing here names a study.
"""
import argparse
from dataclasses import dataclass

from sweeps.cli import add_common_arguments, exit_on_bad_input, settings_from_args, trial_overrides
from sweeps.errors import SweepError
from sweeps.settings import SweepSettings
from sweeps.study import Study, resolve

TRUE, FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")
METAVARS = {bool: "{true,false}", int: "N", float: "X"}


def parse_bool(text: str) -> bool:
    if text.lower() in TRUE:
        return True
    if text.lower() in FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def flag_of(key: str) -> str:
    return "--" + key.replace("_", "-")


def trial_fields(study: Study) -> dict:
    """The study's FIELDS that are trial settings (not axes of its grid)."""
    axes = {axis.key for axis in study.axes}
    return {key: f for key, f in resolve(study.cell_config).FIELDS.items() if key not in axes}


def add_trial_flags(group, study: Study) -> None:
    for key, field in trial_fields(study).items():
        kind = parse_bool if field.kind is bool else field.kind
        default = "" if field.default == "" else f" (default: {field.default})"
        help_text = (field.doc + default).replace("%", "%%")
        group.add_argument(flag_of(key), *study.renamed_flags.get(key, ()), dest=key, type=kind,
                           choices=field.choices, help=help_text,
                           metavar=METAVARS.get(field.kind))


def build_parser(study: Study) -> argparse.ArgumentParser:
    width = max(map(len, study.presets))
    parser = argparse.ArgumentParser(
        description=study.description, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="presets:\n" + "\n".join(f"  {k:{width}s}  {p.description}" for k, p in study.presets.items()))
    parser.add_argument("--preset", choices=sorted(study.presets), default=study.default_preset,
                        help=f"grid and budget to start from (default: {study.default_preset}); flags override it")
    grid = parser.add_argument_group("the grid (override the preset)")
    for axis in study.axes:
        grid.add_argument(axis.flag, type=axis.kind, nargs="+", choices=axis.choices, help=axis.help)
    add_trial_flags(parser.add_argument_group(
        f"trial settings (override the preset; defaults in {study.cell_config.replace('.', '/')}.py)"), study)
    if study.add_engine_flags:
        study.add_engine_flags(parser.add_argument_group("engine"))
    search = parser.add_argument_group("search")
    helps = {study.grid_search: study.grid_help, **({"optuna": study.optuna.help} if study.optuna else {}),
             **{name: text for name, (text, _) in study.searches.items()}}
    search.add_argument("--search", choices=study.search_names(), default=study.grid_search,
                        help="; ".join(f"{name}: {text}" for name, text in helps.items()))
    search.add_argument("--num-samples", type=int, help="Optuna trials (default: the preset's)")
    search.add_argument("--search-seed", type=int, default=0, help="seed of the TPE sampler (default 0)")
    backend = parser.add_argument_group("backend")
    backend.add_argument("--backend", choices=("ray", "processes"), default="ray",
                         help="ray: a Ray Tune sweep, tracked in MLflow (default); processes: the same cells and "
                              "rows without Ray or MLflow, each trial in a process of its own (a GPU machine with "
                              "torch only); a rerun skips the trials already in results.parquet and continues the "
                              "others from their last report")
    backend.add_argument("--parallel", type=int, default=1, help="processes backend: trials at once (default 1)")
    backend.add_argument("--threads", type=int, default=1, help="processes backend: CPU threads per trial")
    add_common_arguments(parser)
    return parser


@dataclass
class Sweep:
    """One sweep of a study, checked and ready: its axes, trial settings, cells and settings. `run(configs)` runs
    trial configs on Ray Tune; `finish(frame, tracking)` draws, reports and closes (a study's own --search mode
    calls them, possibly twice, as `--search grid` of Soft-IntroVAE does)."""
    study: Study
    args: argparse.Namespace
    axes: dict[str, tuple]
    base: dict
    cells: list[dict]
    settings: SweepSettings
    sweep_params: dict

    @property
    def validate_cell(self):
        """The cell module's validate_config: a plain function, since Tune pickles the tracking callback that holds
        it into the sweep's state, and this object holds the command line (tracking URI with its password)."""
        return resolve(self.study.cell_config).validate_config

    def grid_trials(self) -> list[dict]:
        """The trial configs of the whole grid (one per cell, or populations), each checked as its trainable will."""
        return self.checked_trials(self.study.trial_configs(self.cells, self.axes, self.args))

    def checked_trials(self, configs: list[dict]) -> list[dict]:
        validate_trial = resolve(self.study.trial_config or self.study.cell_config).validate_config
        for config in configs:
            validate_trial(config)
        return configs

    def run(self, configs: list[dict], settings: SweepSettings | None = None, cells: int | None = None):
        """Run (or resume) the trials `configs` in their order; (results frame, tracking session)."""
        from sweeps.listed_search import listed_trials
        from sweeps.runner import run_sweep

        configs = self.checked_trials(configs)
        return run_sweep(settings or self.settings, resolve(self.study.trainable), {}, self.study.label,
                         cells or len(configs), self.sweep_params, search_alg=listed_trials(configs),
                         num_samples=len(configs), full_config=self.validate_cell)

    def finish(self, frame, tracking, settings: SweepSettings | None = None, draw=None,
               artifacts: tuple[str, ...] | None = None) -> int:
        from sweeps.runner import finish_sweep

        return finish_sweep(frame, settings or self.settings, tracking, artifacts or self.study.artifacts,
                            draw or self.draw)

    def draw(self, frame, settings: SweepSettings) -> None:
        if self.study.draw is None:
            return
        paths = resolve(self.study.draw)(frame, settings.out_dir)
        summary = settings.out_dir / self.study.summary_file if self.study.summary_file else None
        if summary is not None and summary.exists():
            print(first_section(summary.read_text()))
        print(f"figures and tables: {', '.join(p.name for p in paths)} in {settings.out_dir}")


def first_section(markdown: str) -> str:
    """A summary's text up to its second '### ' heading: the headline table, not every table."""
    parts = markdown.split("\n### ")
    return ("\n### ".join(parts[:2]) if len(parts) > 2 else markdown).strip()


def chosen_axes(study: Study, args, preset) -> dict[str, tuple]:
    axes = {}
    for axis in study.axes:
        given = getattr(args, axis.dest)
        values = tuple(given if given is not None else preset.axes[axis.key])
        if len(set(values)) != len(values):
            raise SweepError(f"{axis.flag} lists a value twice: {' '.join(map(str, values))}")
        axes[axis.key] = values
    return axes


def prepare(study: Study, argv=None) -> Sweep:
    """Parse and check everything that can be known wrong before anything starts."""
    args = build_parser(study).parse_args(argv)
    preset = study.presets[args.preset]
    axes = chosen_axes(study, args, preset)
    base = trial_overrides(preset.trial, args, tuple(trial_fields(study)))
    cells = study.cells(axes, base)
    validate_cell = resolve(study.cell_config).validate_config
    for cell in cells:  # every cell's config is checked before anything starts
        validate_cell(cell)
    if study.check_cells:  # and what they need from outside (data files)
        resolve(study.check_cells)([validate_cell(cell) for cell in cells])
    if args.parallel < 1 or args.threads < 1:
        raise SweepError("--parallel and --threads must be >= 1")
    sweep_params = {"preset": args.preset, "search": args.search, **{a.dest: list(axes[a.key]) for a in study.axes},
                    **{f"trial.{k}": v for k, v in base.items()}}
    settings = settings_from_args(args, study.name, {"priorsweep.preset": args.preset,
                                                     "priorsweep.search": args.search})
    settings.headline, settings.progress_keys = study.headline, study.progress
    settings.report_columns = study.report_columns
    return Sweep(study, args, axes, base, cells, settings, sweep_params)


def run_optuna(sweep: Sweep) -> int:
    """TPE + ASHA at one cell (axes the space searches may list several values)."""
    from sweeps.optuna_search import optuna_asha_in_sweep
    from sweeps.runner import run_sweep

    study, search, args = sweep.study, sweep.study.optuna, sweep.args
    fixed = [axis for axis in study.axes if axis.key not in search.searched_axes and len(sweep.axes[axis.key]) > 1]
    if fixed:
        raise SweepError(f"--search optuna tunes at one cell: give one {', one '.join(a.flag for a in fixed)} value")
    first = sweep.cells[0]
    constants = study.trial_configs([first], {k: v[:1] for k, v in sweep.axes.items()}, args)[0]
    constants = {k: v for k, v in constants.items() if k not in search.searched_axes}
    full = sweep.validate_cell(first)
    reports = -(-full[study.budget_key] // full["report_every"])  # ASHA's budget is counted in reports
    num_samples = args.num_samples or study.presets[args.preset].search_samples
    if num_samples < 1:
        raise SweepError(f"--num-samples must be >= 1, got {num_samples}")
    searcher, scheduler, ledger = optuna_asha_in_sweep(
        sweep.settings, max_t=reports, grace_period=search.grace_reports(full, reports), seed=args.search_seed,
        define_by_run=resolve(search.space)(sweep.axes, constants), metric=study.metric, mode=study.mode,
        budget=num_samples)
    frame, tracking = run_sweep(sweep.settings, resolve(study.trainable), {}, study.label, num_samples,
                                sweep.sweep_params, search_alg=searcher, scheduler=scheduler, early_stopped=ledger,
                                metric=study.metric, mode=study.mode, num_samples=num_samples,
                                full_config=sweep.validate_cell)
    return sweep.finish(frame, tracking, draw=lambda f, s: report_search(f, s, study),
                        artifacts=("results.parquet",))


def report_search(frame, settings: SweepSettings, study: Study) -> None:
    """The searched trials in a line, and the best one's searched settings as flags to pass to the grid."""
    finished = frame[frame["status"] == "completed"].sort_values(study.metric, ascending=study.mode == "min")
    pruned = int((frame["status"] == "pruned").sum())
    database = settings.out_dir / "optuna.db"
    print(f"\n{len(frame)} Optuna trials, {pruned} pruned by ASHA; study in {database} "
          f"(optuna-dashboard sqlite:///{database})")
    if finished.empty:
        print("no trial completed its full budget")
        return
    import optuna

    best = finished.iloc[0]
    names = optuna.load_study(study_name=settings.name, storage=f"sqlite:///{database}").trials[0].params
    flags = " ".join(f"{flag_of(k)} {best[k]:.3g}" if isinstance(best[k], float) else f"{flag_of(k)} {best[k]}"
                     for k in names if k in best)
    print(f"best {study.metric} {best[study.metric]:.4g}; pass to the grid:\n  {flags}")


@exit_on_bad_input
def main(study: Study, argv=None) -> int:
    sweep = prepare(study, argv)
    if sweep.args.backend == "processes":
        from sweeps.local_backend import run_locally

        return run_locally(sweep)
    if sweep.args.search == sweep.study.grid_search:
        return sweep.finish(*sweep.run(sweep.grid_trials(), cells=len(sweep.cells)))
    if sweep.args.search == "optuna":
        return run_optuna(sweep)
    return resolve(study.searches[sweep.args.search][1])(sweep)
