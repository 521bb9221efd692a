"""Grid cells of a trial. A trial is one cell, or, on the population engine (trainables/bias_grid_population.py),
one cell per member: its result carries a `population` list of member metrics, its config a `betas` list.
Tracking and the results table work per cell, so a cell looks the same whichever engine ran it."""


def trial_cells(trial_id: str, config: dict, result: dict | None) -> list[tuple[str, dict, dict]]:
    """(cell id, cell config, cell metrics) for every cell a trial covers."""
    result = result or {}
    if "betas" not in config:
        return [(trial_id, config, result)]
    common = {k: v for k, v in result.items() if k != "population"}
    members = result.get("population") or [{} for _ in config["betas"]]
    base = {k: v for k, v in config.items() if k != "betas"}
    return [(f"{trial_id}-{m}", {**base, "beta": beta}, {**common, **member})
            for m, (beta, member) in enumerate(zip(config["betas"], members, strict=True))]
