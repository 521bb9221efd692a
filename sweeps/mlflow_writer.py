"""One background thread that does every MLflow write of a sweep, so the sweep never waits on the server.

The tracking callback (sweeps/mlflow_tracking.py) hands it events; the thread drains whatever has queued up and
sends each run's metrics, params and tags together in as few `log_batch` calls as MLflow's limits allow (a busy
sweep's many small results become a few large writes). MLflow's own async logging (`synchronous=False`) is not used
on top: it queues per run in this same process, and a failed async write is only logged, so this thread could not
tell the sweep what MLflow is missing.

When the server fails the thread goes offline: it says so once, drops MLflow writes (the journal has them all),
still renders figures, and checks the server every few seconds; when it answers again, live logging resumes and
what was dropped is counted, so the sweep can run `sync` at its end (or print the command).
"""
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from analysis.mlflow_runs import STATUS_TAG, child_runs, create_child, log_in_batches, tracking_problem

_STOP = object()


@dataclass
class _Pending:
    """One run's writes waiting for the next log_batch."""

    metrics: list[Metric] = field(default_factory=list)
    params: list[Param] = field(default_factory=list)
    tags: list[RunTag] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.metrics or self.params or self.tags)


@dataclass
class MlflowTarget:
    client: MlflowClient
    uri: str
    experiment: str
    parent_run_id: str


class MlflowWriter:
    """Queue of tracking events for one sweep; `target` None renders figures only (a `--no-mlflow` sweep)."""

    def __init__(self, target: MlflowTarget | None, run_ids: dict[str, str], retry_every_s: float = 5.0,
                 batch_interval_s: float = 1.0):
        self.target = target
        self.run_ids = run_ids  # cell -> MLflow run id; shared with the results table
        self.retry_every_s = retry_every_s
        self.batch_interval_s = batch_interval_s
        self.cells: dict[str, tuple[str, dict[str, str]]] = {}  # cell -> (run name, params), to create runs late
        self.online = target is not None
        self.dropped = 0  # MLflow writes lost to an outage: `sync` restores them from the journal
        self.calls = 0
        self._offline_since = 0.0
        self._last_probe = 0.0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._hurry = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mlflow-writer", daemon=True)
        self._thread.start()

    # ---- called from the driver's callbacks (cheap: a queue put) ---------------------------------------------------
    def start_cell(self, cell: str, name: str, params: dict[str, str]) -> None:
        self._queue.put(("start", cell, name, params))

    def log_metrics(self, cell: str, metrics: list[Metric]) -> None:
        self._queue.put(("metrics", cell, metrics))

    def end_cell(self, cell: str, status: str, run_status: str) -> None:
        self._queue.put(("end", cell, status, run_status))

    def log_artifact(self, cell: str | None, local: Path, folder: str | None = None,
                     make: Callable[[], Path | None] | None = None) -> None:
        """Upload `local` to the cell's run (None: the parent); `make()` first creates the file, even offline."""
        self._queue.put(("artifact", cell, local, folder, make))

    def flush(self, timeout_s: float = 120.0) -> None:
        """Wait until everything queued so far has been written (or dropped)."""
        done = threading.Event()
        self._queue.put(("flush", done))
        self._hurry.set()
        done.wait(timeout_s)
        self._hurry.clear()

    def close(self, timeout_s: float = 120.0) -> bool:
        """Finish the queue; True when everything reached MLflow (nothing dropped, nothing left)."""
        self._queue.put((_STOP,))
        self._hurry.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            print(f"warning: MLflow writes still pending after {timeout_s:.0f} s; the journal keeps them",
                  file=sys.stderr)
            return False
        return self.target is None or self.dropped == 0

    # ---- the thread ------------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            events = [self._queue.get()]
            # a pause before draining lets events pile up into fewer, larger writes, and keeps this thread from
            # taking the GIL from the driver's event loop at every single result; flush() and close() cut it short
            self._hurry.wait(self.batch_interval_s)
            while len(events) < 10_000:
                try:
                    events.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(event[0] is _STOP for event in events)
            try:
                self._process([event for event in events if event[0] is not _STOP])
            except Exception as error:  # a bug here must not end tracking silently: count it, `sync` repairs
                self.dropped += 1
                print(f"warning: MLflow writer: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
                for event in events:  # nobody may wait forever on a flush this batch held
                    if event[0] == "flush":
                        event[1].set()
            if stop:
                return

    def _process(self, events: list[tuple]) -> None:
        pending: dict[str, _Pending] = {}
        for kind, cell, *rest in events:
            if kind == "start":
                self.cells[cell] = (rest[0], rest[1])
                self._ensure_run(cell, pending)
            elif kind == "metrics":
                pending.setdefault(cell, _Pending()).metrics.extend(rest[0])
            elif kind == "end":
                status, run_status = rest
                pending.setdefault(cell, _Pending()).tags.append(RunTag(STATUS_TAG, status))
                self._flush(cell, pending)
                self._terminate(cell, run_status)
            elif kind == "artifact":
                self._artifact(cell, pending, *rest)
            elif kind == "flush":
                for waiting in list(pending):
                    self._flush(waiting, pending)
                cell.set()  # the event the caller waits on
        for cell in list(pending):
            self._flush(cell, pending)

    def _terminate(self, cell: str, run_status: str) -> None:
        run_id = self.run_ids.get(cell)
        if run_id:
            self._call(lambda: self.target.client.set_terminated(run_id, status=run_status))

    def _artifact(self, cell, pending, local: Path, folder: str | None, make) -> None:
        if make is not None:
            try:
                make()
            except Exception as error:  # a figure must never stop a sweep
                print(f"warning: could not draw {local.name}: {error}", file=sys.stderr)
                return
        if cell is not None:
            self._flush(cell, pending)
        if self.target is None or not local.exists():
            return
        run_id = self.target.parent_run_id if cell is None else self.run_ids.get(cell)
        if run_id:
            upload = self.target.client.log_artifacts if local.is_dir() else self.target.client.log_artifact
            self._call(lambda: upload(run_id, str(local), folder))

    def _ensure_run(self, cell: str, pending: dict[str, _Pending]) -> str | None:
        """The cell's run, created (with its params queued) on first need."""
        if cell not in self.run_ids and cell in self.cells and self.target is not None:
            name, params = self.cells[cell]
            target = self.target
            run_id = self._call(lambda: create_child(target.client, target.experiment, target.parent_run_id,
                                                     cell, name))
            if run_id:
                self.run_ids[cell] = run_id
                pending.setdefault(cell, _Pending()).params.extend(Param(k, v) for k, v in params.items())
        return self.run_ids.get(cell)

    def _flush(self, cell: str, pending: dict[str, _Pending]) -> None:
        writes = pending.pop(cell, None)
        if not writes or self.target is None:
            return
        run_id = self._ensure_run(cell, pending)
        writes.params += pending.pop(cell, _Pending()).params  # params queued by a late creation
        if run_id is None:
            self.dropped += 1
            return
        self._call(lambda: log_in_batches(self.target.client, run_id, writes.metrics, writes.params, writes.tags))

    # ---- outages ---------------------------------------------------------------------------------------------------
    def _call(self, write: Callable):
        """Run one MLflow write; None (and counted as dropped) when offline or when it fails."""
        if self.target is None:
            return None
        if not self.online and not self._back_online():
            self.dropped += 1
            return None
        try:
            self.calls += 1
            return write()
        except Exception as error:  # MlflowException, connection errors, database errors: all mean "not written"
            self.dropped += 1
            self.online, self._offline_since = False, time.monotonic()
            print(f"warning: MLflow at {self.target.uri} failed ({type(error).__name__}: {str(error)[:200]}); the "
                  f"sweep goes on, results stay in the results directory; retrying every {self.retry_every_s:.0f} s",
                  file=sys.stderr, flush=True)
            return None

    def _back_online(self) -> bool:
        now = time.monotonic()
        if now - self._last_probe < self.retry_every_s:
            return False
        self._last_probe = now
        target = self.target
        if tracking_problem(target.uri):
            return False
        try:
            # runs created by a write whose answer was lost are found again, so no cell gets a second run
            self.run_ids.update({cell: run for cell, run in
                                 child_runs(target.client, target.experiment, target.parent_run_id).items()
                                 if cell not in self.run_ids})
        except Exception:
            return False
        self.online = True
        print(f"MLflow at {target.uri} answers again after {now - self._offline_since:.0f} s; {self.dropped} "
              f"writes missed so far are restored from the journal when the sweep ends", file=sys.stderr, flush=True)
        return True
