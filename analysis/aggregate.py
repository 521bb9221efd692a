"""Aggregate trials over seeds: one row per cell with mean, std and count of every metric."""
import pandas as pd


def cell_summary(frame: pd.DataFrame, axes: list[str], metrics: list[str]) -> pd.DataFrame:
    """Mean/std/n over the completed trials of each cell (NaNs are skipped, not zeroed).

    Returns columns: *axes, then for each metric `<metric>` (mean), `<metric>:std`, `<metric>:n`, plus `trials`
    (completed) and `failed` (diverged, error, pruned) per cell. Cells with no completed trial keep NaN means.
    """
    cells = frame.groupby(axes).size()
    completed = frame[frame["status"] == "completed"]
    present = [m for m in metrics if m in frame.columns]
    grouped = completed.groupby(axes)
    summary = grouped[present].mean().reindex(cells.index)
    stds = grouped[present].std(ddof=1).reindex(cells.index)
    counts = grouped[present].count().reindex(cells.index).fillna(0).astype(int)
    for metric in present:
        summary[f"{metric}:std"] = stds[metric]
        summary[f"{metric}:n"] = counts[metric]
    summary["trials"] = completed.groupby(axes).size().reindex(cells.index).fillna(0).astype(int)
    summary["failed"] = (cells - summary["trials"]).astype(int)
    return summary.reset_index()
