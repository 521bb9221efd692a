"""A real `ray up` + `ray submit` + `ray down` of the smoke sweep, over SSH, on this one machine.

The on-prem cluster (`provider: local`, head 127.0.0.1, no workers) is driven exactly as on real hosts: the Ray CLI
runs here as root and ssh's into the head as a throw-away unprivileged user, to an sshd of the test's own on a free
loopback port (reached through a ProxyCommand relay: the cluster YAML has no port option). The user, the sshd, the
keys and every process are the test's and end with it. See sshd.py for why the SSH user must not be root.
"""
import getpass
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sweeps.studies.bias_grid import PRESETS
from tests.cluster.sshd import (
    SSHD,
    CiUser,
    LoopbackSshd,
    create_user,
    delete_user,
    free_port,
    kill_processes,
    make_key,
    psutil,
    python_for_user,
    wait_until_no_processes,
    write_relay,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
SCRIPT = REPO / "sweeps" / "bias_grid.py"
ONPREM_CONFIG = REPO / "docker" / "cluster-onprem.yaml"  # the shipped on-prem config, when there is one
SMOKE = PRESETS["smoke"].axes
SWEEP = "up-smoke"


def ray_control_dir(cluster_name: str) -> Path:
    """Where the Ray CLI keeps its ssh ControlMaster sockets for this cluster (command_runner.SSHCommandRunner)."""
    from ray.autoscaler._private.command_runner import HASH_MAX_LENGTH

    user_hash = hashlib.sha256(getpass.getuser().encode()).hexdigest()[:HASH_MAX_LENGTH]
    cluster_hash = hashlib.sha256(cluster_name.encode()).hexdigest()[:HASH_MAX_LENGTH]
    return Path(f"/tmp/ray_ssh_{user_hash}/{cluster_hash}")


@pytest.fixture
def workspace():
    """/tmp/psci-XXXXXXXX (short: Ray's unix sockets live under the user's home) with `root/` (keys, configs, logs;
    root only) beside `home/` (the user's). Not pytest's tmp_path: /tmp/pytest-of-root is closed to other users."""
    if os.geteuid() != 0:
        pytest.skip("creates a throw-away user and starts an sshd: needs root")
    missing = [tool for tool in ("useradd", "userdel", "ssh", "ssh-keygen", "rsync") if shutil.which(tool) is None]
    missing += [] if Path(SSHD).exists() else ["sshd"]
    if missing:
        pytest.skip(f"needs openssh-server, openssh-client, rsync and useradd (passwd); missing: {missing}")
    base = Path(tempfile.mkdtemp(prefix="psci-", dir="/tmp"))
    base.chmod(0o711)
    (base / "root").mkdir(mode=0o700)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def ci_user(workspace):
    """The SSH user: unprivileged, so the `ray stop` of `ray up`/`ray down` can end no one else's Ray."""
    user = create_user(workspace / "home")
    yield user
    delete_user(user)  # ends (by pid) whatever it still runs first


@pytest.fixture
def client_key(workspace, ci_user):
    key = make_key(workspace / "root" / "id_ed25519")
    ssh_dir = ci_user.home / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    authorized = ssh_dir / "authorized_keys"
    shutil.copyfile(key.with_suffix(".pub"), authorized)
    authorized.chmod(0o600)
    ci_user.own(ssh_dir, authorized)
    return key


@pytest.fixture
def sshd(workspace, ci_user, client_key):
    server = LoopbackSshd(workspace / "root", ci_user, ci_user.home / ".ssh" / "authorized_keys").start()
    yield server
    server.stop()


def write_login_env(user: CiUser, bin_dir: Path, extra: dict[str, str]) -> Path:
    """The head's environment, independent of root's. Ray runs every command as `bash --login -c -i 'source
    ~/.bashrc; …'`, and Debian's /etc/profile resets PATH, so both ~/.bash_profile and ~/.bashrc source it.
    RAY_TMPDIR: Ray's default /tmp/ray is shared with root's Ray instances; under it `ray start` writes its sessions
    and the address file that `--address auto` reads (a shared one would send ours or theirs to the wrong cluster),
    and the head's autoscaler its local-provider state."""
    runtime = user.home / "rt"
    runtime.mkdir()
    variables = {"RAY_TMPDIR": str(runtime), "TMPDIR": str(runtime), "RAY_USAGE_STATS_ENABLED": "0",
                 "MPLBACKEND": "Agg", **extra}
    env_file = user.home / ".priorsweep-ci-env"
    env_file.write_text(f'export PATH="{bin_dir}:$PATH"\n' + "".join(f'export {k}="{v}"\n' for k, v in
                                                                     variables.items()))
    for rc in (".bash_profile", ".bashrc"):
        (user.home / rc).write_text(f". {env_file}\n")
    user.own(runtime, env_file, user.home / ".bash_profile", user.home / ".bashrc")
    return runtime


def cluster_config(name: str, user: CiUser, key: Path, relay: Path, gcs_port: int) -> dict:
    """The shipped on-prem config when there is one, made to point at this machine's loopback sshd and to install
    and mount nothing (the user runs this checkout's environment); else the same written from scratch."""
    config = yaml.safe_load(ONPREM_CONFIG.read_text()) if ONPREM_CONFIG.exists() else {}
    for key_name in ("docker", "head_node", "worker_nodes", "available_node_types", "head_node_type",
                     "min_workers"):
        config.pop(key_name, None)
    client, agent = free_port(), free_port()  # Ray's defaults (10001, 52365) may be taken by other Ray instances
    config.update({
        "cluster_name": name,
        "max_workers": 0,
        "provider": {"type": "local", "head_ip": "127.0.0.1", "worker_ips": []},
        "auth": {"ssh_user": user.name, "ssh_private_key": str(key), "ssh_proxy_command": str(relay)},
        "file_mounts": {}, "cluster_synced_files": [],
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [], "worker_setup_commands": [],
        "head_start_ray_commands": [
            # no --node-ip-address=127.0.0.1: Ray swaps a loopback address for the machine's (resolve_ip_for_localhost)
            f"ray start --head --port={gcs_port} --ray-client-server-port={client} "
            f"--dashboard-agent-listen-port={agent} --num-cpus=2 --include-dashboard=false --disable-usage-stats "
            "--autoscaling-config=~/ray_bootstrap_config.yaml",
        ],
        "worker_start_ray_commands": [],
    })
    return config


@dataclass
class RayCli:
    """The Ray cluster launcher, run here as root (it only ssh's into the head): every call in its own process
    group with a timeout; the finaliser brings the cluster down if the test did not, and ends what the CLI's ssh
    left behind (ControlMaster connections persist 10 s, with their ProxyCommand relays)."""
    workdir: Path
    config: Path
    control_dir: Path
    relay: Path
    user: CiUser
    gcs_port: int
    up: bool = False

    def __call__(self, *args: str, timeout_s: float) -> tuple[int | None, str]:
        log = self.workdir / f"ray-{args[0]}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
        env.update(RAY_TMPDIR=str(self.workdir), TMPDIR=str(self.workdir), RAY_USAGE_STATS_ENABLED="0",
                   PYTHONUNBUFFERED="1")
        started = time.monotonic()
        with open(log, "wb") as out:
            process = subprocess.Popen([RAY, *args], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                       cwd=self.workdir, env=env, start_new_session=True)
            try:
                code = process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                code = None
            finally:
                try:
                    os.killpg(process.pid, signal.SIGKILL)  # the CLI's ssh/rsync children, if any are left
                except ProcessLookupError:
                    pass
                process.wait(timeout=30)
        print(f"ray {args[0]}: exit {code} after {time.monotonic() - started:.0f} s (log: {log})", flush=True)
        return code, log.read_text(errors="replace")

    def close_ssh(self) -> None:
        """Ends the CLI's ssh ControlMasters (`ssh -O exit`), then, by pid, any of its ssh or relay processes."""
        if self.control_dir.is_dir():
            for socket_path in self.control_dir.iterdir():
                subprocess.run(["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", f"{self.user.name}@127.0.0.1"],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=15)
        marks = (str(self.control_dir), str(self.relay))
        ours = []
        for process in psutil.process_iter(["cmdline"]):
            if any(mark in part for part in process.info["cmdline"] or () for mark in marks):
                ours.append(process)
        kill_processes(ours)
        shutil.rmtree(self.control_dir, ignore_errors=True)


@pytest.fixture
def ray_cli(workspace, ci_user, sshd, client_key):
    root = workspace / "root"
    name = f"psci-{ci_user.name.rsplit('-', 1)[1]}"
    relay = write_relay(root / f"relay-{sshd.port}", sshd.port)
    bin_dir, extra = python_for_user(ci_user, workspace)
    write_login_env(ci_user, bin_dir, extra)
    gcs_port = free_port()
    config = cluster_config(name, ci_user, client_key, relay, gcs_port)
    import jsonschema
    import ray.autoscaler

    jsonschema.validate(config, json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text()))
    path = root / "cluster.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    cli = RayCli(root, path, ray_control_dir(name), relay, ci_user, gcs_port)
    yield cli
    if cli.up:
        cli("down", "-y", str(path), timeout_s=90)
    cli.close_ssh()


def process_names(user: CiUser) -> set[str]:
    names = set()
    for process in user.processes():
        try:
            names.add(process.name())
        except psutil.NoSuchProcess:
            pass
    return names


@pytest.mark.timeout(600)
def test_ray_up_submit_and_down_run_the_smoke_sweep_over_ssh(ray_cli, ci_user):
    started = time.monotonic()
    config = str(ray_cli.config)
    ray_cli.up = True
    code, output = ray_cli("up", "-y", config, "--no-config-cache", "--disable-usage-stats", timeout_s=180)
    assert code == 0, f"ray up failed:\n{output[-6000:]}\nsshd:\n{(ray_cli.workdir / 'sshd.log').read_text()[-3000:]}"
    running = process_names(ci_user)
    assert {"gcs_server", "raylet"} <= running, f"no Ray head of {ci_user.name} after ray up: {sorted(running)}"

    home = ci_user.home
    uri = f"sqlite:///{home}/mlflow.db"
    code, output = ray_cli("submit", config, "--no-config-cache", str(SCRIPT), "--", "--preset", "smoke",
                           "--address", "auto", "--mlflow-uri", uri, "--out", f"{home}/results", "--name", SWEEP,
                           timeout_s=300)
    assert code == 0, f"ray submit failed:\n{output[-6000:]}"
    joined = re.search(r"Connecting to existing Ray cluster at address: \S+:(\d+)", output)
    assert joined and joined[1] == str(ray_cli.gcs_port), f"the sweep did not join the cluster of ray up:\n{output}"

    results = home / "results" / "bias_grid" / SWEEP / "results.parquet"
    assert results.stat().st_uid == ci_user.uid  # written on the head, by its user
    table = pd.read_parquet(results)
    cells = sorted((b, beta, s) for b in SMOKE["bias"] for beta in SMOKE["beta"] for s in SMOKE["seed"])
    assert sorted(zip(table["bias"], table["beta"], table["seed"], strict=True)) == cells
    assert (table["status"] == "completed").all()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("bias_grid")
    parents = client.search_runs([experiment.experiment_id], f"tags.`priorsweep.sweep` = '{SWEEP}'")
    assert [p.info.status for p in parents] == ["FINISHED"]
    children = client.search_runs([experiment.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'")
    assert len(children) == len(cells)
    assert {c.info.run_id for c in children} == set(table["mlflow_run_id"])
    assert all(c.info.status == "FINISHED" for c in children)

    code, output = ray_cli("down", "-y", config, timeout_s=90)
    assert code == 0, f"ray down failed:\n{output[-6000:]}"
    ray_cli.up = False
    ray_cli.close_ssh()
    left = wait_until_no_processes(ci_user, timeout_s=30)
    described = kill_processes(left)
    assert not described, f"processes of {ci_user.name} left after ray down: {described}"
    print(f"ray up + submit + down: {time.monotonic() - started:.0f} s", flush=True)
