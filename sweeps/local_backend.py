"""`--backend processes`: a study's cells without Ray or MLflow, for a machine that has only torch, pandas and pyarrow
(a lent GPU machine). Same cells, trial configs, labels, report cadence and results rows as a Ray sweep; each trial
runs in a process of its own, `--parallel` at once; a row is added to results.parquet as each trial ends, and a
rerun with the same --name skips the trials already there and continues the others from their last report (each
report is checkpointed: sweeps/local_checkpoints.py; a finished trial's checkpoints are removed with its row written).

    python -m sweeps.introvae_prior --preset paper2d --seeds 0 1 --backend processes --device cuda --parallel 4
"""
import hashlib
import json
import multiprocessing
import sys
import time
from pathlib import Path

import pandas as pd

from sweeps import local_checkpoints
from sweeps.cells import cell_row, trial_cells
from sweeps.progress_text import trial_progress
from sweeps.study import resolve
from tracking.files import RESULTS_FILE, write_parquet

FINISHED = ("completed", "diverged")


class PrintingSink:
    """The trial loop's sink outside Ray: keeps the last report, prints a progress line per report, and (given a
    checkpoint directory) checkpoints each report and continues a killed trial from its last one."""

    restored_report = None

    def __init__(self, label: str, keys: tuple[str, ...], checkpoints: Path | None = None):
        self.label, self.keys, self.last, self.checkpoints = label, keys, {}, checkpoints
        self.started = self.previous_time = time.perf_counter()
        self.previous_step = 0

    def restore(self, run) -> bool:
        if self.checkpoints is None:
            return False
        self.restored_report = local_checkpoints.restore(self.checkpoints, run)
        if self.restored_report is None:
            return False
        self.previous_step = run.step
        print(f"  {self.label}: continues from its checkpoint at step {run.step}", flush=True)
        return True

    def report(self, metrics: dict, run, checkpoint: bool) -> None:
        if checkpoint and self.checkpoints is not None:
            local_checkpoints.save(self.checkpoints, run, metrics)
        now = time.perf_counter()
        step = int(metrics.get("step", 0))
        rate = (step - self.previous_step) / max(now - self.previous_time, 1e-9)
        self.previous_step, self.previous_time = step, now
        self.last = {**metrics, "time_total_s": now - self.started}
        shown = metrics if "population" not in metrics else {}
        print(f"  {self.label}: {trial_progress(step, int(metrics.get('total_steps', 0)), rate, shown, self.keys)}",
              flush=True)


def trial_id_of(config: dict) -> str:
    """A trial's id from its config alone, so a rerun knows which trials are done."""
    text = json.dumps(config, sort_keys=True, default=str)
    return "local-" + hashlib.sha1(text.encode()).hexdigest()[:10]


def trial_of(cell_id: str) -> str:
    """The trial a cell belongs to: 'local-<hash>' of 'local-<hash>' or of a population member's 'local-<hash>-3'."""
    return "-".join(cell_id.split("-")[:2])


def run_trial(job) -> list[dict]:
    """In a process of its own: train one trial config to the end; its cells' rows."""
    study_name, config, settings, threads = job
    import torch

    from sweeps.studies import all_studies

    study = all_studies()[study_name]
    torch.set_num_threads(threads)
    trial_id = trial_id_of(config)
    cells = trial_cells(trial_id, config, None)
    label = study.label(cells[0][1]) + (f" and {len(cells) - 1} more cells" if len(cells) > 1 else "")
    sink = PrintingSink(label, study.progress, local_checkpoints.checkpoint_directory(settings.out_dir, trial_id))
    try:
        resolve(study.trainable)(config, sink=sink)
        errored = False
    except Exception as error:  # the trial fails, the others go on; the row says so
        print(f"  {label}: error: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        errored = True
    validate = resolve(study.cell_config).validate_config
    rows = []
    for cell_id, cell, metrics in trial_cells(trial_id, config, sink.last):
        status = "error" if errored else metrics.get("status", "error")
        rows.append(cell_row(cell_id, validate(cell), metrics, status, study.name, settings.name, None))
    return rows


def run_locally(sweep) -> int:
    """Every trial of the sweep's grid; exit status 1 if any ended in error."""
    if sweep.args.search != sweep.study.grid_search:
        from sweeps.errors import SweepError

        raise SweepError(f"--backend processes runs the grid (--search {sweep.study.grid_search}); searches need Ray")
    settings = sweep.settings
    configs = sweep.grid_trials()
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    path = settings.out_dir / RESULTS_FILE
    rows = {row["trial_id"]: row for row in pd.read_parquet(path).to_dict("records")} if path.exists() else {}
    finished_cells: dict[str, list[bool]] = {}  # trial id -> whether each of its cells finished
    for row in rows.values():
        finished_cells.setdefault(trial_of(row["trial_id"]), []).append(row["status"] in FINISHED)
    done = {trial for trial, finished in finished_cells.items() if all(finished)}
    todo = [config for config in configs if trial_id_of(config) not in done]
    local_checkpoints.remove_finished(settings.out_dir, done)
    print(f"{len(configs)} trials ({len(sweep.cells)} cells) of {sweep.study.name}, {len(configs) - len(todo)} "
          f"already in {path}; {sweep.args.parallel} at once, no Ray, no MLflow", flush=True)
    jobs = [(sweep.study.name, config, settings, sweep.args.threads) for config in todo]
    with multiprocessing.get_context("spawn").Pool(sweep.args.parallel, maxtasksperchild=1) as pool:
        for finished in pool.imap_unordered(run_trial, jobs):
            for row in finished:
                rows[row["trial_id"]] = row
                headline = ", ".join(f"{k.removeprefix('eval/')} {row[k]:.4g}" for k in sweep.study.headline
                                     if isinstance(row.get(k), (int, float)))
                print(f"[{len(rows)}/{len(sweep.cells)}] {sweep.study.label(row)}: {row['status']}"
                      f"{' — ' + headline if headline else ''}", flush=True)
            write_parquet(pd.DataFrame(list(rows.values())), path)
            if finished and all(row["status"] in FINISHED for row in finished):  # an error reruns from its last report
                local_checkpoints.remove(local_checkpoints.checkpoint_directory(
                    settings.out_dir, trial_of(finished[0]["trial_id"])))
    frame = pd.DataFrame(list(rows.values()))
    try:
        sweep.draw(frame, settings)
    except ImportError as error:  # a machine with torch only: the figures can be drawn where the rows are read
        print(f"no figures here ({error}); draw them with python -m analysis where matplotlib is installed")
    print(f"results: {path}")
    return 0 if (frame["status"] != "error").all() else 1
