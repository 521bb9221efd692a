"""A real multi-node Ray cluster on one machine: one `ray start --head --block` process and `ray start --address …
--block` workers, each in its own process group, so a test ends (or kills, to lose a node) exactly what it started.

Every port a node opens is chosen free here: two nodes on one machine (or another Ray instance of the user) would
otherwise collide on Ray's fixed defaults (dashboard agent 52365, client server 10001, dashboard 8265). The
cluster's token file and temp dir are the test's own, so the user's ~/.ray/auth_token is neither read nor written.
"""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
NODE_START_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _node_ports() -> list[str]:
    return ["--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
            "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
            "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port()),
            "--min-worker-port", "0", "--max-worker-port", "0"]


@dataclass
class RayNode:
    name: str  # also a custom resource of the node (1 unit), which tells its node id apart in ray.nodes()
    process: subprocess.Popen
    log: Path

    def kill(self) -> None:
        """The node dies as a machine would: its raylet, object store and workers, at once."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=30)


@dataclass
class LocalRayCluster:
    root: Path
    auth: str = "disabled"  # "token": every node and client needs the cluster's token
    dashboard: bool = False  # Ray Jobs need the dashboard (ray[default])
    nodes: list[RayNode] = field(default_factory=list)

    def __post_init__(self):
        self.root.mkdir(parents=True, exist_ok=True)
        self.token_path = self.root / "ray_token"
        self.token_path.write_text(secrets.token_hex(32))
        self.token_path.chmod(0o600)
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        # Ray puts sockets under the temp dir; a short path stays within the 107-byte limit of a socket name
        self.temp_dir = Path(f"/tmp/ps-{secrets.token_hex(4)}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of the nodes and of anything that talks to them (drivers, `ray job`)."""
        env = {**os.environ, "RAY_AUTH_MODE": self.auth, "RAY_AUTH_TOKEN_PATH": str(self.token_path),
               "RAY_USAGE_STATS_ENABLED": "0", **extra}
        # `ray job submit -- python …` runs `python` from the head's PATH: this venv's, as on a cluster's image
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.pop("RAY_ADDRESS", None)
        return env

    def _start(self, name: str, args: list[str], env_extra: dict[str, str]) -> RayNode:
        log = self.root / f"{name}.log"
        with open(log, "w") as sink:
            process = subprocess.Popen([RAY, "start", "--block", "--disable-usage-stats", *args],
                                       env=self.env(**env_extra), stdout=sink, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        node = RayNode(name, process, log)
        self.nodes.append(node)
        return node

    def start_head(self, num_cpus: int = 0, env_extra: dict[str, str] | None = None,
                   extra_args: tuple[str, ...] = ()) -> RayNode:
        dashboard = ["--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                     "--dashboard-port", str(self.dashboard_port)] if self.dashboard \
            else ["--include-dashboard", "false"]
        head = self._start("head", ["--head", "--node-ip-address", "127.0.0.1", "--port", str(self.gcs_port),
                                    "--ray-client-server-port", str(free_port()), "--temp-dir", str(self.temp_dir),
                                    "--num-cpus", str(num_cpus), "--resources", json.dumps({"head": 1}),
                                    *dashboard, *_node_ports(), *extra_args], env_extra or {})
        self.wait_for_nodes(1)
        return head

    def add_worker(self, name: str, num_cpus: int) -> RayNode:
        worker = self._start(name, ["--address", self.address, "--node-ip-address", "127.0.0.1",
                                    "--num-cpus", str(num_cpus), "--resources", json.dumps({name: 1}),
                                    *_node_ports()], {})
        # one node at a time: Ray gives a starting raylet 30 s to register, which two at once on a loaded 2-core
        # machine can miss
        self.wait_for_nodes(len(self.nodes))
        return worker

    def alive_nodes(self) -> dict[str, str]:
        """name -> Ray node id of every alive node, asked of the GCS by a short-lived client process; nodes this
        object did not start (an autoscaler's) are listed under their node id."""
        script = ("import json, sys, ray; ray.init(address=sys.argv[1], logging_level='ERROR'); "
                  "names = sys.argv[2:]; print('NODES', json.dumps({next((k for k in n['Resources'] if k in names), "
                  "n['NodeID']): n['NodeID'] for n in ray.nodes() if n['Alive']}))")
        out = subprocess.run([sys.executable, "-c", script, self.address, *(n.name for n in self.nodes)],
                             env=self.env(), capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            return {}
        # the client also prints what Ray forwards (autoscaler events): take the line that is the answer
        return json.loads(next(line for line in out.stdout.splitlines() if line.startswith("NODES "))[6:])

    def wait_for_nodes(self, count: int) -> dict[str, str]:
        deadline = time.time() + NODE_START_TIMEOUT_S
        while True:
            for node in self.nodes:
                assert node.process.poll() is None, f"{node.name} exited: {node.log.read_text()[-2000:]}"
            alive = self.alive_nodes() if self._gcs_listening() else {}
            if len(alive) == count:
                return alive
            assert time.time() < deadline, f"only {len(alive)} of {count} Ray nodes came up"
            time.sleep(1)

    def _gcs_listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.gcs_port), timeout=1):
                return True
        except OSError:
            return False

    def shutdown(self) -> None:
        for node in reversed(self.nodes):
            node.kill()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
