"""The shared sweep runner: Ray connection, Tuner (new or resumed), resources, storage, tracking, results table.

The generic study runner (sweeps/study_runner.py) builds a param space and calls `run_sweep`, then
`finish_sweep`. Checks that can fail (tracking server, sweep name, storage) run before Ray starts.
"""
import contextlib
import logging
import os
import sys
from pathlib import Path

# Keeping one checkpoint per trial forces an experiment-state snapshot per checkpoint; that is intended here (a
# restart loses at most one report interval), so Tune's warning about it is noise.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

import pandas as pd  # noqa: E402
import ray  # noqa: E402
from ray import tune  # noqa: E402

from sweeps.cells import trial_cells  # noqa: E402
from sweeps.cluster import check_reachable, check_trial_resources, resolve_address  # noqa: E402
from sweeps.disk_watch import DiskFullWatch  # noqa: E402
from sweeps.errors import DiskFull, SweepError  # noqa: E402
from sweeps.interrupt_watch import InterruptWatch  # noqa: E402
from sweeps.listed_search import ListedTrials  # noqa: E402
from sweeps.progress import ProgressCallback  # noqa: E402
from sweeps.results_table import (
    ResultsTableCallback,  # noqa: E402
    read_rows,  # noqa: E402
)
from sweeps.settings import SweepSettings  # noqa: E402
from sweeps.sweep_session import SweepSession, check_tracking_uri  # noqa: E402
from sweeps.tune_state import readable_pickle, readable_states, repair_for_restore  # noqa: E402
from tracking.files import RESULTS_FILE, is_disk_full, write_parquet  # noqa: E402
from tracking.journal import JOURNAL_FILE, JournalError, read_journal  # noqa: E402
from tracking.secrets import redact  # noqa: E402
from tracking.writer import start_writer_server  # noqa: E402


def check_settings(settings: SweepSettings) -> None:
    """Everything that can be known wrong before Ray starts."""
    if settings.cpus_per_trial <= 0 or settings.gpus_per_trial < 0:
        raise SweepError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    if settings.max_failures < -1:
        raise SweepError(f"--max-failures must be >= 0 (or -1: retry without limit), got {settings.max_failures}")
    if settings.max_concurrent_trials is not None and settings.max_concurrent_trials < 1:
        raise SweepError(f"--max-concurrent-trials must be >= 1, got {settings.max_concurrent_trials}")
    if settings.progress_every_s < 0:
        raise SweepError(f"--progress-every must be >= 0 seconds, got {settings.progress_every_s:g}")
    if settings.gpus_per_trial > 1 and not float(settings.gpus_per_trial).is_integer():
        raise SweepError(f"--gpus-per-trial above 1 must be a whole number, got {settings.gpus_per_trial}")
    if settings.mlflow_uri:
        check_tracking_uri(settings.mlflow_uri)
    local_storage = "://" not in settings.storage
    exists = (Path(settings.experiment_path) / "tuner.pkl").exists() if local_storage else False
    if settings.resume:
        if local_storage and not exists:
            raise SweepError(f"nothing to resume: no sweep '{settings.name}' under {settings.storage}")
        try:  # the resumed sweep appends to its journal: a damaged one is reported now, not after Ray has started
            read_journal(settings.out_dir / JOURNAL_FILE)
        except JournalError as error:
            raise SweepError(str(error)) from None
    elif exists or (settings.out_dir / RESULTS_FILE).exists():
        raise SweepError(f"a sweep named '{settings.name}' already exists ({settings.experiment_path}); "
                         f"pass --resume to continue it or choose another --name")


def connect_ray(address: str | None) -> bool:
    """Join the cluster at `address` (or RAY_ADDRESS), after checking in seconds that it answers; else start an
    embedded local Ray. True when this call connected (so the sweep may disconnect), False when a caller had."""
    if ray.is_initialized():  # a caller (test, notebook) already chose the cluster
        return False
    gcs_address = resolve_address(address, os.environ.get("RAY_ADDRESS"))
    if gcs_address is not None:
        check_reachable(gcs_address)
    try:
        if gcs_address is None:
            ray.init(address="local" if os.environ.get("RAY_ADDRESS") == "local" else None,
                     include_dashboard=False, log_to_driver=True)
        else:
            ray.init(address=gcs_address, log_to_driver=True)
    except (ray.exceptions.AuthenticationError, ConnectionError) as error:  # a missing or wrong token, mostly
        first_sentence = str(error).split(". ")[0]
        raise SweepError(f"cannot join Ray{' at ' + gcs_address if gcs_address else ''}: {first_sentence}") from None
    return True


def finish_sweep(frame: pd.DataFrame, settings: SweepSettings, tracking: SweepSession,
                 artifacts: tuple[str, ...], draw=None) -> int:
    """The study's figures and tables (`draw(frame, settings)`), the report, the sweep's files on its parent run,
    tracking closed, the summary printed; exit status 1 if any trial errored. Should any of it fail, tracking is
    still closed (FAILED), so what the writer holds reaches MLflow and the parent run is not left RUNNING."""
    from analysis.report import write_report

    try:
        if draw is not None:
            draw(frame, settings)
        tracking.flush()
        if len(frame):  # the table's MLflow run ids, now that every run has been created
            known = frame["trial_id"].map(tracking.run_ids)
            frame["mlflow_run_id"] = known.where(known.notna(), frame["mlflow_run_id"])
            write_parquet(frame, settings.out_dir / RESULTS_FILE)
        report = write_report(settings.out_dir)
        tracking.log_sweep_files((*artifacts, report.name))
    except BaseException:
        tracking.close("FAILED")
        raise
    tracking.close("FINISHED")
    counts = frame["status"].value_counts().to_dict() if len(frame) else {}
    print(f"\n{len(frame)} results ({', '.join(f'{v} {k}' for k, v in counts.items())})")
    print(f"results: {settings.out_dir / RESULTS_FILE}; report: {report}")
    if tracking.parent and not tracking.parent.uri.startswith(("http://", "https://")):
        print(f"browse the runs: mlflow ui --backend-store-uri {redact(tracking.parent.uri)}   "
              "(then open the link above)")
    return 0 if (frame["status"] != "error").all() else 1


def continue_or_start_again(settings: SweepSettings, search_alg) -> bool:
    """Whether Tune can restore the sweep (True); else a listed grid goes on under its own ids from what the results
    table and the journal say: the finished trials are skipped, the others run again from their start."""
    if "://" in settings.storage or (readable_states(settings.experiment_path)[0]
                                     and readable_pickle(Path(settings.experiment_path) / "tuner.pkl")):
        return True
    if not isinstance(search_alg, ListedTrials):
        raise SweepError(f"the saved state of sweep '{settings.name}' is lost (cut short, and no earlier copy): its "
                         f"finished trials are in {settings.out_dir}; start a new sweep with another --name")
    journal = read_journal(settings.out_dir / JOURNAL_FILE)
    finished = set(read_rows(settings.out_dir / RESULTS_FILE))
    started = sorted(journal.cells)
    prefix = started[0].split("_")[0] + "_" if started else search_alg.searcher.prefix
    configs = search_alg.searcher.configs
    done = {position for position, config in enumerate(configs)
            if all(cell in finished for cell, _, _ in trial_cells(f"{prefix}{position:05d}", config, None))}
    search_alg.searcher.continue_without_saved_state(prefix, done)
    print(f"warning: the sweep's saved Tune state is lost (cut short, no earlier copy); {len(done)} of {len(configs)} "
          "trials finished and are kept, the others run again from their start", file=sys.stderr)
    return False


PENDING_TRIALS_VARIABLE = "TUNE_MAX_PENDING_TRIALS_PG"  # read by Tune's controller when fit() starts


@contextlib.contextmanager
def listed_grid_pending_at_once(search_alg):
    """Under any search but its own grid generator, Tune asks resources for one pending trial at a time: a listed
    grid's trials would start one after another, each waiting for its actor to come up, and (actors reused) short
    ones would all land on the first node while the others' actors start. A listed grid is known in advance, so all
    of it may wait for resources at once, as under Tune's grid generator; a value the user set wins."""
    if not isinstance(search_alg, ListedTrials) or PENDING_TRIALS_VARIABLE in os.environ:
        yield
        return
    os.environ[PENDING_TRIALS_VARIABLE] = str(max(1, len(search_alg.searcher.configs)))
    try:
        yield
    finally:
        del os.environ[PENDING_TRIALS_VARIABLE]


def new_or_restored_tuner(settings: SweepSettings, trainable, param_space: dict, callbacks: list, search_alg,
                          scheduler, metric, mode, num_samples: int, restore: bool):
    trainable = tune.with_resources(trainable, {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial})
    if restore:
        tuner = tune.Tuner.restore(settings.experiment_path, trainable, resume_unfinished=True, resume_errored=True,
                                   param_space=param_space)
        # restored Tuners keep the RunConfig they were saved with, minus callbacks: put ours back
        tuner._local_tuner._run_config.callbacks = callbacks
        if scheduler is not None:
            # and the search and scheduler they were created with (copies, pickled at the start): this run's share
            # one early-stop ledger with the callbacks (sweeps/optuna_search.py); Tune restores the searcher's
            # state into them
            tuner._local_tuner._tune_config.search_alg = search_alg
            tuner._local_tuner._tune_config.scheduler = scheduler
        return tuner
    run_config = tune.RunConfig(
        name=settings.name,
        storage_path=settings.storage,
        callbacks=callbacks,
        failure_config=tune.FailureConfig(max_failures=settings.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),  # a killed driver's lag: sweeps/tune_state.py
        verbose=0,  # our own lines: ResultsTableCallback per finished trial, ProgressCallback for running ones
    )
    tune_config = tune.TuneConfig(search_alg=search_alg, scheduler=scheduler, metric=metric, mode=mode,
                                  num_samples=num_samples, reuse_actors=True,
                                  max_concurrent_trials=settings.max_concurrent_trials)
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)


def run_sweep(
    settings: SweepSettings,
    trainable,
    param_space: dict,
    trial_label,
    total_trials: int,
    sweep_params: dict,
    *,
    search_alg=None,
    scheduler=None,
    early_stopped=(),
    metric: str | None = None,
    mode: str | None = None,
    num_samples: int = 1,
    full_config=None,
) -> tuple[pd.DataFrame, SweepSession]:
    """Run (or resume) one sweep; returns its results table and its tracking (closed by finish_sweep).

    full_config(cell config) -> the config with every default filled in (the study's validate_config): what each
    MLflow child run shows as its params.
    """
    check_settings(settings)
    # a population trial reports a list of member dicts, which TensorBoard cannot take: Tune's TBX logger would print
    # the whole list (kilobytes) once as a warning; every value reaches MLflow and the results table instead
    logging.getLogger("ray.tune.logger.tensorboardx").setLevel(logging.ERROR)
    start_writer_server()  # its imports run while Ray starts
    connected_here = connect_ray(settings.address)
    waiting_for = check_trial_resources(settings.cpus_per_trial, settings.gpus_per_trial,
                                        ray.get_runtime_context().gcs_address)
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    if waiting_for:
        print(waiting_for, flush=True)
    restore = settings.resume
    if settings.resume:
        for warning in repair_for_restore(settings.experiment_path):
            print(f"warning: {warning}", file=sys.stderr)
        restore = continue_or_start_again(settings, search_alg)
    tracking = SweepSession(settings, trial_label, early_stopped, sweep_params, full_config)
    table = None
    disk = DiskFullWatch([settings.out_dir] + ([] if "://" in settings.storage else [Path(settings.storage)]))
    try:  # from here on, whatever ends the sweep closes its tracking (its writer would otherwise keep the driver)
        table = ResultsTableCallback(settings.out_dir / RESULTS_FILE, settings.study, settings.name, trial_label,
                                     total_trials, early_stopped, tracking.run_ids, settings.headline)
        interrupt = InterruptWatch()
        progress = ProgressCallback(trial_label, settings.progress_every_s, settings.progress_keys, num_samples)
        callbacks = [tracking.callback, table, progress, disk, interrupt]
        tuner = new_or_restored_tuner(settings, trainable, param_space, callbacks, search_alg, scheduler, metric,
                                      mode, num_samples, restore)
        with listed_grid_pending_at_once(search_alg):
            tuner.fit()
        if disk.full:  # stopped as by Ctrl-C when trials failed for want of space
            raise DiskFull(disk.message(settings.out_dir))
        if interrupt.interrupted:  # Tune answered Ctrl-C by saving its state and returning early
            raise KeyboardInterrupt
    except BaseException as error:  # Ctrl-C or a crash of the driver's loop: what finished is on disk already
        full = isinstance(error, DiskFull) or is_disk_full(error) or disk.full  # Tune trips on its half files
        try:
            tracking.close("KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
        except OSError as closing:  # the sweep record cannot be written on a full disk; the old one stays whole
            if not (full or is_disk_full(closing)):
                raise
            full = True
        if connected_here and (full or isinstance(error, KeyboardInterrupt)):
            # the trials' workers, stopped, still print their last words through the driver: disconnect first, so
            # the line saying how to go on is the last one the user sees
            with contextlib.suppress(Exception):  # nor may a failing shutdown (a full disk) take that line's place
                ray.shutdown()
        if full and not isinstance(error, DiskFull):
            raise DiskFull(disk.message(settings.out_dir)) from None
        if isinstance(error, KeyboardInterrupt):
            kept = len(table.rows) if table else 0
            print(f"interrupted: {kept} results kept in {settings.out_dir}; continue with "
                  f"--name {settings.name} --resume", file=sys.stderr)
        raise
    return table.frame(), tracking
