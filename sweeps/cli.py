"""Command-line flags every sweep script shares, and turning them into SweepSettings."""
import argparse
import os
import re
import sys
import time
from pathlib import Path

from sweeps.errors import DiskFull, SweepError
from sweeps.settings import PROGRESS_EVERY_S, SweepSettings
from tracking.files import is_disk_full

EXIT_FAILED = 1  # the sweep ran and could not finish (a full disk)
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # the shell's status for a process ended by SIGINT
# a cluster's environment names its shared storage, so the same command runs on a laptop and on any cluster
OUT_ENV, STORAGE_ENV = "PRIORSWEEP_OUT", "PRIORSWEEP_STORAGE"


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("where it runs and where results go")
    where.add_argument("--name", help="sweep name, unique per sweep (default: <preset>-<date>-<time>); "
                       "with --resume, the sweep to continue (default: the newest)")
    where.add_argument("--resume", action="store_true", help="continue an interrupted sweep of the same name")
    where.add_argument("--out", type=Path, default=Path(os.environ.get(OUT_ENV) or "results"),
                       help=f"results root; the sweep writes to OUT/<study>/<name>/ (default: {OUT_ENV} if set, "
                       "else results); on a cluster a shared path, so results outlive the job")
    where.add_argument("--storage", default=os.environ.get(STORAGE_ENV) or None,
                       help="Ray Tune storage root (checkpoints, restore state); on a multi-node cluster a shared "
                       f"path or s3://… URI (default: {STORAGE_ENV} if set, else OUT/<study>/_tune)")
    where.add_argument("--address", default=None, help="Ray cluster to join: 'auto' for the running cluster "
                       "(as under `ray submit`); default: RAY_ADDRESS if set, else an embedded local Ray")
    where.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (default: 1)")
    where.add_argument("--gpus-per-trial", type=float, default=0.0,
                       help="GPUs per trial, fractions allowed (0.25 = four trials share a GPU; default: 0)")
    where.add_argument("--max-failures", type=int, default=2,
                       help="restarts of a failed trial from its last checkpoint (default: 2)")
    where.add_argument("--max-concurrent-trials", type=int, default=None,
                       help="cap on trials running at once (default: as many as resources allow)")
    where.add_argument("--progress-every", type=float, default=PROGRESS_EVERY_S, metavar="SECONDS",
                       help="seconds between progress lines of the running trials (step, rate, time left; "
                       f"default: {PROGRESS_EVERY_S:g}; 0: at every report)")
    tracking = parser.add_argument_group("tracking")
    tracking.add_argument("--mlflow-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"),
                          help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    tracking.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow (results, figures and the "
                          "tracking journal still go to OUT; `python -m analysis sync` can fill a server later)")
    tracking.add_argument("--log-checkpoints", action="store_true", help="also log each trial's last checkpoint "
                          "to the sweep's parent run (checkpoints/<trial id>/); off by default: they are large")


def add_search_arguments(group) -> None:
    group.add_argument("--num-samples", type=int, help="Optuna trials (default: the preset's)")
    group.add_argument("--search-seed", type=int, default=0, help="seed of the TPE sampler (default 0)")


def add_device_argument(group) -> None:
    group.add_argument("--device", choices=("auto", "cpu", "cuda"), help="auto (default): the GPU when the trial "
                       "was given one, else the CPU")


def trial_overrides(preset_trial: dict, args, flags: tuple[str, ...]) -> dict:
    """The preset's trial settings with every flag the user gave on top (flag dest = config key)."""
    return {**preset_trial, **{key: getattr(args, key) for key in flags if getattr(args, key) is not None}}


# a sweep's name is a folder under OUT/<study>/ and a Tune experiment under the storage: one plain path component
SWEEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def resolve_name(args, study: str) -> str:
    """The sweep's name; with --resume and no --name, the newest sweep of this study under OUT."""
    if args.name is not None:
        if not SWEEP_NAME.fullmatch(args.name):
            raise SweepError(f"--name {args.name!r}: a sweep name is 1-100 letters, digits, '.', '_' or '-', "
                             "starting with a letter or digit (it becomes a folder under --out)")
        return args.name
    if args.resume:
        sweeps = sorted((args.out / study).glob("*/sweep.json"), key=lambda p: p.stat().st_mtime)
        if not sweeps:
            raise SweepError(f"nothing to resume under {args.out / study}")
        name = sweeps[-1].parent.name
        print(f"resuming the newest {study} sweep: {name}")
        return name
    return f"{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}"


def settings_from_args(args, study: str, tags: dict):
    name = resolve_name(args, study)
    out_dir = (args.out / study / name).resolve()
    storage = args.storage or str((args.out / study / "_tune").resolve())
    return SweepSettings(
        study=study, name=name, out_dir=out_dir, storage=storage, address=args.address,
        mlflow_uri=None if args.no_mlflow else args.mlflow_uri, cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial, resume=args.resume, max_failures=args.max_failures,
        max_concurrent_trials=args.max_concurrent_trials, log_checkpoints=args.log_checkpoints,
        progress_every_s=args.progress_every, tags=tags,
    )


def exit_on_bad_input(main):
    """Known input errors end with one line on stderr and exit status 2, before anything starts; Ctrl-C ends with
    status 130 and no traceback (the runner has said how to resume); a full disk with one line and status 1."""

    def wrapped(*args, **kwargs) -> int:
        from trainables.config import ConfigError

        try:
            return main(*args, **kwargs) or 0
        except (ConfigError, SweepError) as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        except DiskFull as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_FAILED
        except OSError as error:  # a full disk while drawing the report or tables, after the trials
            if not is_disk_full(error):
                raise
            print(f"error: {error.strerror} writing {error.filename or 'the results'}: every finished result is "
                  "kept; free space, then run the command again (add --resume to a sweep)", file=sys.stderr)
            return EXIT_FAILED

    return wrapped
