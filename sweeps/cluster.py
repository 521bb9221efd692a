"""Joining a Ray cluster, and knowing before the sweep starts that it can run there.

Two inputs only a cluster user gives would otherwise end in a silent wait: an address nothing answers at (Ray's GCS
client retries for minutes) and a trial no node can ever hold (Tune waits for resources forever). Both are refused
here with one line. On an autoscaling cluster a trial that fits a node type that is not up yet is not an error: the
sweep says what it waits for and Ray starts the nodes.
"""
import socket
from pathlib import Path

from sweeps.errors import SweepError

ADDRESS_PROBE_TIMEOUT_S = 5.0


def resolve_address(address: str | None, ray_address_env: str | None) -> str | None:
    """The GCS address (host:port) the sweep will join, or None for an embedded local Ray.

    'auto' (and RAY_ADDRESS=auto) means the cluster `ray start` last started on this machine, as Ray itself reads it.
    """
    wanted = address or ray_address_env
    if not wanted or wanted == "local":
        return None
    if wanted == "auto":
        from ray._private.services import canonicalize_bootstrap_address_or_die

        try:
            return canonicalize_bootstrap_address_or_die("auto")
        except ConnectionError:
            raise SweepError("--address auto: no Ray cluster is running on this machine (start one with "
                             "`ray start --head`, or give --address HOST:PORT)") from None
    return wanted


def check_reachable(address: str) -> None:
    """One TCP connection to the cluster's GCS port, so an unreachable --address fails in seconds."""
    host_port = address.split("://", 1)[-1].rstrip("/")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise SweepError(f"--address {address!r}: expected HOST:PORT of the cluster's head (e.g. 10.0.0.5:6379) "
                         "or 'auto'")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=ADDRESS_PROBE_TIMEOUT_S):
            pass
    except OSError as error:
        raise SweepError(f"cannot reach the Ray cluster at {host_port}: {error.strerror or error} "
                         "(is `ray start --head` running there, and is --address/RAY_ADDRESS right?)") from None


def _fits(node_resources: dict, need: dict[str, float]) -> bool:
    return all(node_resources.get(key, 0.0) >= amount for key, amount in need.items() if amount > 0)


def _describe(need: dict[str, float]) -> str:
    return " and ".join(f"{amount:g} {key}" for key, amount in need.items() if amount > 0) or "nothing"


def autoscaling_node_types(gcs_address: str) -> dict[str, dict[str, float]]:
    """Node types the cluster's autoscaler may still start (resources per node); empty on a fixed cluster (plain
    `ray start`, an embedded Ray).

    Two places say: the cluster config an autoscaler reported to the GCS (KubeRay's does), and the config file the
    head's autoscaler (`ray up`, `ray start --autoscaling-config`) was started with, which a driver on the head
    (`ray submit`, `ray job submit`) can read. A driver elsewhere joining a `ray up` cluster sees neither and treats
    the cluster as fixed; run it on the head."""
    from ray._private.state import state

    try:
        config = state.get_cluster_config()
    except Exception:  # an older GCS: fall through to the head's autoscaler config
        config = None
    if config is not None and config.node_group_configs:
        return {group.name: dict(group.resources) for group in config.node_group_configs if group.max_count != 0}
    return _head_autoscaler_node_types(gcs_address)


def _head_autoscaler_node_types(gcs_address: str) -> dict[str, dict[str, float]]:
    """The worker node types of the autoscaling config the head's monitor process was started with, when that
    process runs on this machine for this cluster."""
    import psutil
    import yaml

    port = gcs_address.rpartition(":")[2]
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if not any(arg.endswith("autoscaler/_private/monitor.py") for arg in cmdline):
            continue
        flags = dict(arg[2:].split("=", 1) for arg in cmdline if arg.startswith("--") and "=" in arg)
        if flags.get("gcs-address", "").rpartition(":")[2] != port or "autoscaling-config" not in flags:
            continue
        try:
            config = yaml.safe_load(Path(flags["autoscaling-config"]).expanduser().read_text())
        except (OSError, yaml.YAMLError):
            return {}
        return {name: {k: float(v) for k, v in (spec.get("resources") or {}).items()}
                for name, spec in (config.get("available_node_types") or {}).items()
                if spec.get("max_workers", config.get("max_workers", 0)) != 0}
    return {}


def check_trial_resources(cpus: float, gpus: float, gcs_address: str | None) -> str | None:
    """Refuse a trial size no node can hold now or after scaling; on an autoscaling cluster where only a node type
    not up yet can hold it, return the line to print about what the sweep waits for (else None)."""
    import ray

    need = {"CPU": cpus, "GPU": gpus}
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    if any(_fits(node, need) for node in nodes):
        return None
    node_types = autoscaling_node_types(gcs_address) if gcs_address else {}
    scalable = sorted(name for name, resources in node_types.items() if _fits(resources, need))
    if scalable:
        return (f"waiting for the autoscaler: each trial needs {_describe(need)}; no node that is up has it, "
                f"node type {', '.join(scalable)} will be started")
    largest = max(nodes, key=lambda node: (node.get("GPU", 0.0), node.get("CPU", 0.0)), default={})
    raise SweepError(f"no node of this cluster can run a trial that needs {_describe(need)} (largest node: "
                     f"{largest.get('CPU', 0):g} CPU, {largest.get('GPU', 0):g} GPU); lower --cpus-per-trial or "
                     "--gpus-per-trial")
