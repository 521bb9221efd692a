"""The 2D protocol's missing runs on a CPU machine, in pieces that end before a deadline.

    python -m devtools.protocol_pieces status                             # which of the 60 runs have rows
    python -m devtools.protocol_pieces run --workers 2 --until 04:10      # run missing ones, none ends after 04:10
    python -m devtools.protocol_pieces collect --tag cpu-20261207         # their rows -> benchmarks/data

The protocol (docs/introvae.md, "Five seeds") is 4 datasets × 3 priors × 5 seeds × 30,000 iterations; with no GPU
it runs here one run per core, ~30 min for the standard prior and ~65 for a learned one. A session that is stopped
loses its machine and the runs in flight, so `run` starts a run only if its estimate ends before --until: the
pieces end with the session's time, not at its cut. Every run is its own `--backend processes` sweep
(OUT/introvae/paper2d-TAG-DATASET-PRIOR-sSEED), so an interrupted run continues from its last checkpoint when `run`
is called again on the same machine, and runs of any number of `run` calls at once never share a results table (a
run is held by an flock on OUT/protocol-claims/, released when its process ends, however it ends).

Done means a finished run's row (completed, or diverged) in the committed rows (--rows; by default the post-fix
files listed in the docs) or under OUT for this tag. Order: the dataset with most runs done first (a dataset's
verdict needs all of its priors), within it the standard prior, then seed by seed; a run that would not fit before
the deadline is passed over for a shorter one that does.
"""
import argparse
import datetime as dt
import fcntl
import glob
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from analysis.load import ResultsError, combine_pieces, load_parquet

DATASETS = ("8gaussians", "rings", "2spirals", "checkerboard")
PRIORS = ("standard", "mog", "vamp")
SEEDS = (0, 1, 2, 3, 4)
# the rows computed after the learned priors' fix (docs/introvae.md): the standard prior's seed 0 of parts 1-2 and
# every later piece; parts 3-4 hold the learned priors' pre-fix seed 0 and are left out
COMMITTED_ROWS = ("benchmarks/data/introvae_paper2d_s0_part1.parquet",
                  "benchmarks/data/introvae_paper2d_s0_part2.parquet",
                  "benchmarks/data/introvae_paper2d_std_*.parquet",
                  "benchmarks/data/introvae_paper2d_learned_*.parquet",
                  "benchmarks/data/introvae_paper2d_cpu_*.parquet")
FINISHED = ("completed", "diverged")  # the statuses a `--backend processes` rerun skips (sweeps/local_backend.py)
MINUTES = {"standard": 32, "mog": 70, "vamp": 70}  # one run per core of the 2-core machine (rows: 26-30, 50-67 min)

Cell = tuple[str, str, int]  # (dataset, prior, seed)


def sweep_name(tag: str, cell: Cell) -> str:
    dataset, prior, seed = cell
    return f"paper2d-{tag}-{dataset}-{prior}-s{seed}"


def finished_cells(paths: list[str]) -> dict[Cell, str]:
    """Cell -> status, for cells whose run finished (completed, or diverged: a rerun would diverge again); a cell run
    again in a later file counts as that file has it."""
    pieces = [load_parquet(path) for path in paths]
    if not pieces:
        return {}
    frame, _ = combine_pieces(pieces)
    done = frame[frame["status"].isin(FINISHED)]
    return {(d, p, int(s)): status for d, p, s, status in zip(done["dataset"], done["prior"], done["seed"],
                                                                done["status"], strict=True)}


def committed_paths(patterns: list[str]) -> list[str]:
    return [path for pattern in patterns for path in sorted(glob.glob(pattern))]


def own_paths(out: Path, tag: str) -> list[str]:
    return sorted(glob.glob(str(out / "introvae" / f"paper2d-{tag}-*" / "results.parquet")))


def run_order(done: set[Cell]) -> list[Cell]:
    """Missing cells, the dataset with most runs done first, then standard, then seed by seed."""
    per_dataset = {d: sum(cell[0] == d for cell in done) for d in DATASETS}
    missing = [(d, p, s) for d in DATASETS for p in PRIORS for s in SEEDS if (d, p, s) not in done]
    return sorted(missing, key=lambda c: (-per_dataset[c[0]], DATASETS.index(c[0]), c[1] != "standard", c[2],
                                          PRIORS.index(c[1])))


def first_fitting(order: list[Cell], now: float, deadline: float, factor: float, take):
    """(cell, its claim) for the first cell in `order` whose estimate ends by `deadline` and that `take` can claim
    (returns a handle, or None when another run holds it); (None, None) when none."""
    for cell in order:
        if now + MINUTES[cell[1]] * 60 * factor > deadline:
            continue
        handle = take(cell)
        if handle is not None:
            return cell, handle
    return None, None


class Claims:
    """Which cells a process of this machine runs now: an flock per cell, gone when its holder ends."""

    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()

    def take(self, cell: Cell):
        """An open locked file, or None when another run holds the cell."""
        handle = open(self.directory / ("-".join(map(str, cell)) + ".lock"), "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        return handle


def worker(index: int, args, claims: Claims, deadline: float) -> None:
    while True:
        with claims.lock:  # one pick at a time in this process; other processes are kept off by the flocks
            done = set(finished_cells(committed_paths(args.rows) + own_paths(args.out, args.tag)))
            picked, handle = first_fitting(run_order(done), time.time(), deadline, args.estimate_factor, claims.take)
        if picked is None:
            print(f"{_now()} worker {index}: no missing run fits before the deadline; stops", flush=True)
            return
        dataset, prior, seed = picked
        log = args.out / "protocol-logs" / f"{sweep_name(args.tag, picked)}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        print(f"{_now()} worker {index}: {dataset} × {prior} seed {seed} (log {log})", flush=True)
        command = [sys.executable, "sweeps/introvae_prior.py", "--preset", "paper2d", "--dataset", dataset,
                   "--prior", prior, "--seeds", str(seed), "--backend", "processes", "--parallel", "1",
                   "--threads", "1", "--name", sweep_name(args.tag, picked), "--out", str(args.out),
                   "--progress-every", "300"]
        with open(log, "a") as output:
            # the run holds its claim too (pass_fds): were this process killed alone, the run keeps the cell
            code = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  pass_fds=(handle.fileno(),)).returncode
        handle.close()
        print(f"{_now()} worker {index}: {dataset} × {prior} seed {seed} ended (exit {code})", flush=True)
        if code != 0:
            print(f"{_now()} worker {index}: stops; see {log}", flush=True)
            return


def _now() -> str:
    return dt.datetime.now().strftime("%H:%M:%S")


def parse_until(text: str) -> float:
    """HH:MM today (tomorrow if already past) as epoch seconds."""
    try:
        hour, minute = (int(part) for part in text.split(":"))
        moment = dt.datetime.now().replace(hour=hour, minute=minute, second=0, microsecond=0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--until wants HH:MM, got {text!r}") from None
    if moment < dt.datetime.now():
        moment += dt.timedelta(days=1)
    return moment.timestamp()


def status(args) -> None:
    committed = finished_cells(committed_paths(args.rows))
    own = {cell: st for cell, st in finished_cells(own_paths(args.out, args.tag)).items() if cell not in committed}
    marks = {**{cell: "x" if st == "completed" else "d" for cell, st in committed.items()},
             **{cell: "+" if st == "completed" else "D" for cell, st in own.items()}}
    for dataset in DATASETS:
        for prior in PRIORS:
            print(f"{dataset:13s} {prior:9s} {' '.join(marks.get((dataset, prior, s), '.') for s in SEEDS)}")
    missing = run_order(set(marks))
    hours = sum(MINUTES[prior] for _, prior, _ in missing) / 60
    print(f"x: committed row, +: row under {args.out} not yet collected (d, D: the same, diverged), .: missing "
          f"({len(missing)}, ~{hours:.0f} core-hours here)")


def collect(args) -> None:
    """This tag's finished rows into its file under benchmarks/data, beside the rows the file already holds (a
    tag's runs may span machines; a run there again replaces its row)."""
    paths = own_paths(args.out, args.tag)
    if not paths:
        raise ResultsError(f"no runs of tag {args.tag} under {args.out}/introvae")
    target = args.data / f"introvae_paper2d_{args.tag.replace('-', '_')}.parquet"
    pieces = ([load_parquet(target)] if target.exists() else []) + [load_parquet(path) for path in paths]
    frame, _ = combine_pieces(pieces)
    frame = frame[frame["status"].isin(FINISHED)]
    frame.to_parquet(target, index=False)
    print(f"{len(frame)} rows -> {target}")


def run_missing(args) -> None:
    """--workers threads, each taking the next missing run that fits before --until, until none does."""
    claims = Claims(args.out / "protocol-claims")
    threads = [threading.Thread(target=worker, args=(i, args, claims, args.until)) for i in range(args.workers)]
    for thread in threads:
        thread.start()
        time.sleep(1)  # the first has claimed its run before the next looks
    for thread in threads:
        thread.join()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("status", "run", "collect"))
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("PRIORSWEEP_OUT", "results")),
                        help="results root of the runs (default: PRIORSWEEP_OUT, else results)")
    parser.add_argument("--tag", default="cpu-" + dt.date.today().strftime("%Y%m%d"),
                        help="names this machine's runs and their rows' file (default: cpu-<today>)")
    parser.add_argument("--data", type=Path, default=Path("benchmarks/data"),
                        help="collect: where the tag's rows file goes (default: benchmarks/data)")
    parser.add_argument("--rows", nargs="+", default=list(COMMITTED_ROWS),
                        help="committed rows (files or globs) whose finished runs count as done")
    parser.add_argument("--workers", type=int, default=2, help="runs at once, one core each (default 2)")
    parser.add_argument("--until", type=parse_until, help="HH:MM: start no run whose estimate ends later (run: "
                        "required)")
    parser.add_argument("--estimate-factor", type=float, default=1.0,
                        help=f"scale the per-run estimates ({MINUTES} min) by this")
    args = parser.parse_args(argv)
    if args.command == "run" and args.until is None:
        parser.error("run needs --until HH:MM (the time by which every run it starts must end)")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    try:
        {"status": status, "collect": collect, "run": run_missing}[args.command](args)
    except ResultsError as error:
        parser.exit(2, f"error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
