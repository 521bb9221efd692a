"""Joining a Ray cluster, and knowing before the sweep starts that it can run there.

Two inputs only a cluster user gives would otherwise end in a silent wait: an address nothing answers at (Ray's GCS
client retries for minutes) and a trial no node can ever hold (Tune waits for resources forever). Both are refused
here with one line. On an autoscaling cluster a trial that fits a node type that is not up yet is not an error: the
sweep says what it waits for and Ray starts the nodes.
"""
import socket

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


def autoscaling_node_types() -> dict[str, dict[str, float]]:
    """Node types the cluster's autoscaler may still start (resources per node), from the config it reported to
    the GCS; empty on a fixed cluster (plain `ray start`, an embedded Ray)."""
    from ray._private.state import state

    try:
        config = state.get_cluster_config()
    except Exception:  # an older GCS, or none reported: treat the cluster as fixed
        return {}
    if config is None:
        return {}
    return {group.name: dict(group.resources) for group in config.node_group_configs if group.max_count != 0}


def check_trial_resources(cpus: float, gpus: float) -> str | None:
    """Refuse a trial size no node can hold now or after scaling; on an autoscaling cluster where only a node type
    not up yet can hold it, return the line to print about what the sweep waits for (else None)."""
    import ray

    need = {"CPU": cpus, "GPU": gpus}
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    if any(_fits(node, need) for node in nodes):
        return None
    scalable = sorted(name for name, resources in autoscaling_node_types().items() if _fits(resources, need))
    if scalable:
        return (f"waiting for the autoscaler: each trial needs {_describe(need)}; no node that is up has it, "
                f"node type {', '.join(scalable)} will be started")
    largest = max(nodes, key=lambda node: (node.get("GPU", 0.0), node.get("CPU", 0.0)), default={})
    raise SweepError(f"no node of this cluster can run a trial that needs {_describe(need)} (largest node: "
                     f"{largest.get('CPU', 0):g} CPU, {largest.get('GPU', 0):g} GPU); lower --cpus-per-trial or "
                     "--gpus-per-trial")
