"""Grid cells of a trial, and the results-table row of one. A trial is one cell, or, on a population engine
(trainables/bias_grid_population.py, trainables/introvae_population.py), one cell per member: its result carries a
`population` list of member metrics, its config the members (`member_cells`). Tracking and the
results table work per cell, so a cell looks the same whichever engine ran it. Ray-free, so benchmarks/run_cells.py
writes the same rows where Ray is not installed."""
import math

TABLE_METRIC_PREFIXES = ("train/", "val/", "eval/", "plot/")  # plot/*: small arrays for figures
# where a cell ran, as each trial reports it (trainables/runtime.node_identity), with its child run's tag names
NODE_FIELDS = {"node_id": "priorsweep.node_id", "node_ip": "priorsweep.node_ip"}


def member_cells(config: dict) -> list[dict] | None:
    """The cell config of each member of a population trial, in member order; None for a one-cell trial.

    Two forms: the β × bias engine's `betas` (and `seeds`) lists, members seed-major; any other engine's `members`,
    one dict of the keys each member sets (trainables/introvae_population.py)."""
    if "members" in config:
        base = {k: v for k, v in config.items() if k != "members"}
        return [{**base, **member} for member in config["members"]]
    if "betas" in config:
        base = {k: v for k, v in config.items() if k not in ("betas", "seeds")}
        seeds = config.get("seeds") or [config.get("seed", 0)]
        return [{**base, "seed": seed, "beta": beta} for seed in seeds for beta in config["betas"]]
    return None


def trial_cells(trial_id: str, config: dict, result: dict | None) -> list[tuple[str, dict, dict]]:
    """(cell id, cell config, cell metrics) for every cell a trial covers."""
    result = result or {}
    cells = member_cells(config)
    if cells is None:
        return [(trial_id, config, result)]
    common = {k: v for k, v in result.items() if k != "population"}
    if len(cells) == 1:  # a population of one is the lone case: the trial is its cell, and reports as one
        return [(trial_id, cells[0], {**common, **(result.get("population") or [{}])[0]})]
    members = result.get("population") or [{} for _ in cells]
    return [(f"{trial_id}-{m}", cell, {**common, **member})
            for m, (cell, member) in enumerate(zip(cells, members, strict=True))]


def cell_row(cell_id: str, config: dict, metrics: dict, status: str, study: str, sweep: str,
             mlflow_run_id: str | None) -> dict:
    row = {"study": study, "sweep": sweep, "trial_id": cell_id, "status": status,
           "mlflow_run_id": mlflow_run_id or "", "wall_time_s": float(metrics.get("time_total_s", math.nan)),
           "step": metrics.get("step", 0), "diverged_at_step": metrics.get("diverged_at_step", -1),
           "device": metrics.get("device", ""), "gpu_ids": metrics.get("gpu_ids", ""),
           "resumed_at_step": metrics.get("resumed_at_step", 0),
           **{key: metrics.get(key, "") for key in NODE_FIELDS}}
    row.update({k: v for k, v in config.items() if not isinstance(v, dict)})
    row.update({k: v for k, v in metrics.items() if k.startswith(TABLE_METRIC_PREFIXES)})
    return row


def node_tags(metrics: dict) -> dict[str, str]:
    """The child run's tags naming the node a cell ran on (none where the trial did not say)."""
    return {tag: str(metrics[key]) for key, tag in NODE_FIELDS.items() if metrics.get(key)}
