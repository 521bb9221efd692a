"""A local MLflow tracking server backed by PostgreSQL, as the tests, the benchmarks and a workstation use it.

    python -m devtools.tracking_server --dir /tmp/mlflow-server --port 5000      # Ctrl-C stops both

starts PostgreSQL (Debian's `postgresql` package: `apt-get install postgresql`) on 127.0.0.1 with its data under
DIR/postgres, then `mlflow server` on 127.0.0.1:PORT with that database as its backend store and DIR/artifacts as
its artifact store (served over HTTP, so clients on other machines can read and write artifacts), and prints the
tracking URI for `--mlflow-uri`. Run it from the repository root: devtools is a helper of the repository, not
part of the installed package. On a cluster the compose file and the on-prem cluster YAML (docker/) run the same pair
with plain `mlflow server`.

PostgreSQL refuses to run as root, so as root its commands run as the `postgres` user the package creates.
"""
import argparse
import contextlib
import glob
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


class ServerError(RuntimeError):
    """A server could not be started."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    raise ServerError("PostgreSQL is not installed (Debian: apt-get install postgresql)")


def _as_postgres_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _reachable_by_postgres(directory: Path) -> Path:
    """As root, the `postgres` user must be able to reach the data directory; private parents (pytest's 0700
    temporary directories) block it, so the data then lives under /tmp, named after the directory asked for."""
    if os.geteuid() != 0:
        return directory
    check = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(directory.parent)])
    if check.returncode == 0:
        return directory
    digest = hashlib.sha1(str(directory).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"priorsweep-postgres-{digest}"


class PostgresServer:
    """A throwaway PostgreSQL cluster in `directory`, trusting local connections, with one database 'mlflow'."""

    def __init__(self, directory: Path, port: int | None = None):
        self.directory = _reachable_by_postgres(Path(directory).resolve())
        self.data = self.directory / "data"
        self.port = port or free_port()
        self.bin = _postgres_bin()

    @property
    def uri(self) -> str:
        """Through psycopg2 (C): the MLflow server spends ~10% less CPU per tracking call than with SQLAlchemy 2.1's
        default for postgresql://, psycopg 3, whose query loop runs in Python (server CPU per trial of create_run,
        log_batch and set_terminated: 41-42 vs 45-48 ms; benchmarks/tracking_call_cost.py)."""
        return self.uri_with_driver("psycopg2")

    def uri_with_driver(self, driver: str) -> str:
        return f"postgresql+{driver}://postgres@127.0.0.1:{self.port}/mlflow"

    def _run(self, *command: str) -> None:
        result = subprocess.run(_as_postgres_user([str(self.bin / command[0]), *command[1:]]),
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise ServerError(f"{command[0]} failed: {(result.stderr or result.stdout).strip()[-500:]}")

    def start(self) -> "PostgresServer":
        fresh = not (self.data / "PG_VERSION").exists()
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        if fresh:
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.directory / "postgres.log"),
                  "-w", "-t", "60", "start")
        if fresh:
            self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "mlflow")
        return self

    def stop(self, remove: bool = False) -> None:
        """Stop the cluster; `remove` also deletes its data (a throwaway cluster of a test or benchmark)."""
        with contextlib.suppress(ServerError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        if remove:
            shutil.rmtree(self.directory, ignore_errors=True)


class MlflowServer:
    """`mlflow server` on 127.0.0.1:port; `kill()` then `start()` simulates an outage (same store, same port)."""

    def __init__(self, backend_uri: str, artifacts: Path, port: int | None = None, log: Path | None = None):
        self.backend_uri, self.artifacts = backend_uri, Path(artifacts)
        self.port = port or free_port()
        self.log = log or self.artifacts.parent / "mlflow-server.log"
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120.0) -> "MlflowServer":
        self.artifacts.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend_uri,
                   "--artifacts-destination", str(self.artifacts), "--host", "127.0.0.1", "--port",
                   str(self.port), "--workers", "1",
                   # gunicorn serves MLflow's Flask app directly; under the default uvicorn every request also passes
                   # through FastAPI's WSGI bridge: ~20% more server CPU per tracking call (create_run 16 vs 9 ms,
                   # set_terminated 12 vs 8.5 ms, measured). Threads keep the UI answering during long uploads, whose
                   # time limit is raised from gunicorn's 30 s for checkpoints. (MLflow 3.17 prints a FutureWarning
                   # that recommends uvicorn "for improved performance"; for these calls it measured slower.)
                   "--gunicorn-opts", "--threads 4 --timeout 300 --log-level warning"]
        # MLflow 3's server also starts a job runner with seven huey consumer processes (GenAI scoring jobs, which
        # priorsweep never submits): ~20 s of CPU to import at start and ~1.5% of a core polling afterwards, taken
        # from the sweep on a small machine
        environment = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with open(self.log, "a") as log:
            # its own process group, so kill() takes the server's worker processes down too
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                            env=environment)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"mlflow server exited with {self.process.returncode}; see {self.log}")
            if self.healthy():
                return self
            time.sleep(0.5)
        self.kill()
        raise ServerError(f"mlflow server did not answer on {self.uri} within {timeout_s:.0f} s; see {self.log}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.uri + "/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the server and its workers (an outage, not a shutdown)."""
        if self.process and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def tracking_server(directory: Path, port: int | None = None, keep: bool = False):
    """PostgreSQL + mlflow server for the duration of a `with` block; yields the MlflowServer. The database is
    deleted afterwards unless `keep` (the command line keeps it, so a restarted server has every run)."""
    postgres = PostgresServer(Path(directory) / "postgres").start()
    server = MlflowServer(postgres.uri, Path(directory) / "artifacts", port)
    try:
        yield server.start()
    finally:
        server.stop()
        postgres.stop(remove=not keep)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.tracking_server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("mlflow-server"),
                        help="where the database and artifacts live (default: ./mlflow-server); reused if present")
    parser.add_argument("--port", type=int, default=5000, help="port of the tracking server (default: 5000)")
    args = parser.parse_args(argv)
    try:
        with tracking_server(args.dir.resolve(), args.port, keep=True) as server:
            print(f"MLflow tracking server: {server.uri}   (PostgreSQL backend, artifacts in {server.artifacts})")
            print(f"  python sweeps/bias_grid.py --mlflow-uri {server.uri} …      Ctrl-C stops it", flush=True)
            while server.process.poll() is None:
                time.sleep(1)
    except ServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
