"""The loop that does every MLflow write of a sweep; it runs in the writer process (tracking/writer.py).

It drains whatever has queued up and sends each run's metrics, params and tags together in as few `log_batch` calls
as MLflow's limits allow (a busy sweep's many small results become a few large writes). MLflow's own async logging
(`synchronous=False`) is not used on top: a failed async write is only logged, so this loop could not tell the sweep
what MLflow is missing.

When the server fails the loop goes offline: it says so once, drops MLflow writes (the journal has them all), still
renders figures, and checks the server every few seconds; when it answers again, live logging resumes and what was
dropped is counted, so the sweep can run `sync` at its end (or print the command).

Requests (tuples, from the driver): ("start", cell, run name, params), ("metrics", cell, step, timestamp, values),
("end", cell, status, run status, tags), ("artifact", cell, local path, folder, make), ("flush", token), ("stop",).
Replies: ("run", cell, run id) as runs are created, ("flushed", token, dropped, online), ("stopped", dropped, online).
"""
import queue
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from tracking.run_layout import STATUS_TAG, child_runs, create_child, log_in_batches, tracking_problem

DRIVER_CHECK_S = 2.0  # how often an idle loop checks that the sweep that started it is still alive


@dataclass
class _Pending:
    """One run's writes waiting for the next log_batch."""

    metrics: list[Metric] = field(default_factory=list)
    params: list[Param] = field(default_factory=list)
    tags: list[RunTag] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.metrics or self.params or self.tags)


@dataclass(frozen=True)
class MlflowTarget:
    """Where a sweep's runs go; plain values, so it travels to the writer process."""

    uri: str
    experiment: str
    parent_run_id: str


class WriterEngine:
    def __init__(self, target: MlflowTarget | None, run_ids: dict[str, str], requests, hurry, replies,
                 driver_alive, retry_every_s: float, batch_interval_s: float):
        self.target = target
        self.client = MlflowClient(tracking_uri=target.uri) if target else None
        self.run_ids = dict(run_ids)  # cell -> MLflow run id
        self.requests, self.hurry, self.replies = requests, hurry, replies
        self.retry_every_s = retry_every_s
        self.batch_interval_s = batch_interval_s
        self.cells: dict[str, tuple[str, dict[str, str]]] = {}  # cell -> (run name, params), to create runs late
        self.online = target is not None
        self.dropped = 0  # MLflow writes lost to an outage: `sync` restores them from the journal
        self._offline_since = 0.0
        self._last_probe = 0.0
        self._driver_alive = driver_alive  # read end of a pipe only the driver writes to: EOF when it is gone

    def run(self) -> bool:
        """Serve requests until ("stop",) (True) or until the driver is gone (False)."""
        while True:
            first = self._next_request()
            if first is None:  # the sweep's process is gone: nobody will read what we would write
                return False
            events = [first]
            # a pause before draining lets events pile up into fewer, larger writes; flush() and close() cut it short
            self.hurry.wait(self.batch_interval_s)
            while len(events) < 10_000:
                try:
                    events.append(self.requests.get_nowait())
                except queue.Empty:
                    break
            stop = any(event[0] == "stop" for event in events)
            try:
                self._process([event for event in events if event[0] != "stop"])
            except Exception as error:  # a bug here must not end tracking silently: count it, `sync` repairs
                self.dropped += 1
                print(f"warning: MLflow writer: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
                for event in events:  # nobody may wait forever on a flush this batch held
                    if event[0] == "flush":
                        self.replies.put(("flushed", event[1], self.dropped, self.online))
            if stop:
                self.replies.put(("stopped", self.dropped, self.online))
                return True

    def _next_request(self) -> tuple | None:
        while True:
            try:
                return self.requests.get(timeout=DRIVER_CHECK_S)
            except queue.Empty:
                if self._driver_alive.poll():  # readable means EOF: the driver never writes to it
                    return None

    def _process(self, events: list[tuple]) -> None:
        pending: dict[str, _Pending] = {}
        for kind, cell, *rest in events:
            if kind == "start":
                self.cells[cell] = (rest[0], rest[1])
                self._ensure_run(cell, pending)
            elif kind == "metrics":
                step, timestamp, values = rest
                pending.setdefault(cell, _Pending()).metrics.extend(
                    Metric(key, value, timestamp, step) for key, value in values.items())
            elif kind == "end":
                status, run_status, tags = rest
                pending.setdefault(cell, _Pending()).tags.extend(
                    RunTag(key, value) for key, value in {**tags, STATUS_TAG: status}.items())
                self._flush(cell, pending)
                self._terminate(cell, run_status)
            elif kind == "artifact":
                self._artifact(cell, pending, *rest)
            elif kind == "flush":
                for waiting in list(pending):
                    self._flush(waiting, pending)
                self.replies.put(("flushed", cell, self.dropped, self.online))  # `cell` is the caller's token
        for cell in list(pending):
            self._flush(cell, pending)

    def _terminate(self, cell: str, run_status: str) -> None:
        run_id = self.run_ids.get(cell)
        if run_id:
            self._call(lambda: self.client.set_terminated(run_id, status=run_status))

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
            upload = self.client.log_artifacts if local.is_dir() else self.client.log_artifact
            self._call(lambda: upload(run_id, str(local), folder))

    def _ensure_run(self, cell: str, pending: dict[str, _Pending]) -> str | None:
        """The cell's run, created (with its params queued) on first need."""
        if cell not in self.run_ids and cell in self.cells and self.target is not None:
            name, params = self.cells[cell]
            target = self.target
            # _call may find the server back first and re-read the parent's children: the run may exist by then
            run_id = self._call(lambda: self.run_ids.get(cell) or create_child(
                self.client, target.experiment, target.parent_run_id, cell, name))
            if run_id and cell not in self.run_ids:
                self.run_ids[cell] = run_id
                self.replies.put(("run", cell, run_id))
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
        self._call(lambda: log_in_batches(self.client, run_id, writes.metrics, writes.params, writes.tags))

    # ---- outages ---------------------------------------------------------------------------------------------------
    def _call(self, write: Callable):
        """Run one MLflow write; None (and counted as dropped) when offline or when it fails."""
        if self.target is None:
            return None
        if not self.online and not self._back_online():
            self.dropped += 1
            return None
        try:
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
            for cell, run in child_runs(self.client, target.experiment, target.parent_run_id).items():
                if cell not in self.run_ids:
                    self.run_ids[cell] = run
                    self.replies.put(("run", cell, run))
        except Exception:
            return False
        self.online = True
        print(f"MLflow at {target.uri} answers again after {now - self._offline_since:.0f} s; {self.dropped} "
              f"writes missed so far are restored from the journal when the sweep ends", file=sys.stderr, flush=True)
        return True
