"""The sweep's handle on its MLflow writer: a separate, low-priority process that does every MLflow write.

Why a process and not a thread: MLflow's client work (SQLAlchemy for a database URI, HTTP and JSON for a server) is
Python that holds the GIL, and in the driver it took the GIL from Tune's event loop at every batch; in its own
process it runs beside the loop, at the lowest CPU priority, so it uses what the driver and the trials leave idle and
catches up when the sweep ends. It also draws the per-cell figures, off the driver.

The driver's side only puts small tuples on a queue (mp.Queue: a background feeder thread sends them, so a put never
blocks on a slow writer) and reads the writer's replies (run ids as runs are created, drop counts) when it flushes.
The writer process comes from a forkserver (see `_writer_context`); it ignores Ctrl-C (the driver decides when
tracking ends) and exits by itself if the driver dies.
"""
import contextlib
import multiprocessing
import multiprocessing.forkserver
import os
import pickle
import queue
import signal
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

from tracking.writer_engine import MlflowTarget, WriterEngine

__all__ = ["MlflowTarget", "MlflowWriter", "preload_in_writers", "start_writer_server"]

# the lowest CPU priority: the driver (0) always goes first, and Ray's trial workers (niceness 15) outweigh it ~2:1,
# so tracking takes the idle moments during a sweep and finishes its backlog at the end
WRITER_NICENESS = 19

# what the forkserver imports for the writers it forks, in this order: modules callers named (preload_in_writers),
# then MLflow's stores (tracking/writer_preload.py)
_caller_preload: list[str] = []


def preload_in_writers(*modules: str) -> None:
    """Have the writers' forkserver import `modules` too, so that the `make` functions a caller hands to
    `log_artifact` (e.g. the per-cell figures, with matplotlib) start warm in every writer. Takes effect when the
    forkserver starts (`start_writer_server` or the first writer): call it at import time of the caller's module."""
    _caller_preload.extend(name for name in modules if name not in _caller_preload)


def _writer_context():
    """A forkserver where the platform has one: a clean process, started once per driver with the writer's modules
    imported, that forks each writer; so no writer inherits the driver's threads (Ray's, MLflow's telemetry) or
    their locks, and only the first sweep of a driver pays the imports (~3 s; tracking/writer_preload.py and
    `preload_in_writers`). Spawn elsewhere."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([*_caller_preload, "tracking.writer_preload"])
    return context


@contextlib.contextmanager
def _main_module_hidden():
    """While a writer starts, an empty `__main__`: forkserver and spawn children otherwise re-run the driver's main
    script (all of it, if it lacks an `if __name__ == "__main__"` guard, e.g. a script that starts a sweep at its
    top level, which would start again in the writer). The writer needs nothing from that script: its target and
    arguments live in importable modules. The module is swapped only for the synchronous start() call."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def start_writer_server() -> None:
    """Start the writers' forkserver now, so that its imports (~3 s of one core, see tracking/writer_preload.py)
    overlap Ray's start instead of holding up the sweep's first writer (the first `Process.start` waits for them).
    Nothing to do where writers are spawned."""
    if _writer_context().get_start_method() == "forkserver":
        with _main_module_hidden():  # the forkserver, too, would import the driver's main script
            multiprocessing.forkserver.ensure_running()


def _writer_main(target, run_ids, requests, hurry, replies, driver_alive, retry_every_s, batch_interval_s) -> None:
    # Ctrl-C and `ray job stop` signal the driver's whole process group; the driver stops the sweep and then ends
    # its writer, which must live until it has sent what the driver handed it (it also ends when the driver dies)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    try:
        os.nice(WRITER_NICENESS)
    except OSError:
        pass
    if not WriterEngine(target, run_ids, requests, hurry, replies, driver_alive, retry_every_s,
                        batch_interval_s).run():
        replies.cancel_join_thread()  # the driver is gone: exit without waiting to deliver replies nobody reads


class MlflowWriter:
    """Queue of tracking events for one sweep; `target` None renders figures only (a `--no-mlflow` sweep)."""

    def __init__(self, target: MlflowTarget | None, run_ids: dict[str, str], retry_every_s: float = 5.0,
                 batch_interval_s: float = 0.25):
        self.target = target
        self.run_ids = run_ids  # cell -> MLflow run id, kept up to date from the writer's replies
        self.dropped = 0  # MLflow writes lost to an outage or a failure: `sync` restores them from the journal
        self.online = target is not None
        self._stopped = False
        context = _writer_context()
        self._requests = context.Queue()
        self._requests.cancel_join_thread()  # at exit, never wait on a writer that stopped reading (journal has all)
        self._replies = context.Queue()
        self._hurry = context.Event()
        # the writer's way to notice a driver that died without close(): this end stays here, and only here
        driver_alive, self._alive = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_writer_main, name="priorsweep-mlflow-writer", daemon=True,
            args=(target, dict(run_ids), self._requests, self._hurry, self._replies, driver_alive, retry_every_s,
                  batch_interval_s))
        with _main_module_hidden():
            self._process.start()
        driver_alive.close()
        self._tokens = 0

    # ---- called from the driver's callbacks (cheap: a queue put) ---------------------------------------------------
    def start_cell(self, cell: str, name: str, params: dict[str, str]) -> None:
        self._requests.put(("start", cell, name, params))

    def log_metrics(self, cell: str, step: int, timestamp_ms: int, values: dict[str, float]) -> None:
        self._requests.put(("metrics", cell, step, timestamp_ms, values))

    def end_cell(self, cell: str, status: str, run_status: str, tags: dict[str, str] | None = None) -> None:
        self._requests.put(("end", cell, status, run_status, tags or {}))
        self._read_replies()  # keeps run_ids current for the results table, without waiting

    def log_artifact(self, cell: str | None, local: Path, folder: str | None = None,
                     make: Callable[[], object] | None = None) -> None:
        """Upload `local` to the cell's run (None: the parent); `make()` first creates the file, even offline.
        `make` runs in the writer process, so it must pickle (a module-level function or a partial of one)."""
        try:
            pickle.dumps(make)  # the queue's feeder thread would only log an unpicklable event and drop it
        except Exception:
            try:  # then draw it here, in the driver
                make()
            except Exception as error:
                print(f"warning: could not draw {local.name}: {error}", file=sys.stderr)
            make = None
        self._requests.put(("artifact", cell, local, folder, make))

    def flush(self, timeout_s: float = 120.0) -> None:
        """Wait until everything queued so far has been written (or dropped)."""
        self._tokens += 1
        self._requests.put(("flush", self._tokens))
        self._wait_for(("flushed", self._tokens), timeout_s)

    def close(self, timeout_s: float = 120.0) -> bool:
        """Finish the queue and end the writer; True when everything reached MLflow (nothing dropped or left)."""
        if self._stopped:
            return self.target is None or self.dropped == 0
        self._requests.put(("stop",))
        done = self._wait_for(("stopped",), timeout_s)
        self._stopped = True
        self._process.join(5.0)
        if self._process.is_alive():
            self._process.kill()
        self._requests.close()
        if not done:
            return False
        return self.target is None or self.dropped == 0

    # ---- replies ---------------------------------------------------------------------------------------------------
    def _wait_for(self, wanted: tuple, timeout_s: float) -> bool:
        self._hurry.set()
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if self._read_replies(wanted, block_s=0.5):
                    return True
                if not self._process.is_alive():
                    print("warning: the MLflow writer process ended unexpectedly; the journal keeps every result",
                          file=sys.stderr)
                    break
            else:
                print(f"warning: MLflow writes still pending after {timeout_s:.0f} s; the journal keeps them",
                      file=sys.stderr)
            self.dropped += 1  # what did not arrive is unknown: make the sweep check MLflow against the journal
            return False
        finally:
            self._hurry.clear()

    def _read_replies(self, wanted: tuple | None = None, block_s: float = 0.0) -> bool:
        """Apply the replies that have arrived; True once `wanted` (matched on its first fields) is among them."""
        while True:
            try:
                reply = self._replies.get(timeout=block_s) if block_s else self._replies.get_nowait()
            except (queue.Empty, OSError, ValueError):
                return False
            kind = reply[0]
            if kind == "run":
                self.run_ids[reply[1]] = reply[2]
            else:  # ("flushed", token, dropped, online) or ("stopped", dropped, online)
                self.dropped, self.online = reply[-2], reply[-1]
                if wanted is not None and reply[:len(wanted)] == wanted:
                    return True
