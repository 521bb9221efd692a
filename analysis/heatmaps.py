"""Annotated β × bias heatmaps (headless PNGs), with collapsed cells hatched, and the tables behind them."""
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on clusters or CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.aggregate import cell_summary  # noqa: E402
from tracking.files import replace_atomically, write_text  # noqa: E402

ROW_AXIS, COLUMN_AXIS = "bias", "beta"


@dataclass(frozen=True)
class HeatmapMetric:
    key: str
    title: str
    lower_is_better: bool


BIAS_GRID_METRICS = (
    HeatmapMetric("eval/pmi", "PMI (MSE of linear map z_true → ẑ; 0 also when collapsed)", True),
    HeatmapMetric("eval/pmi_lstsq", "PMI, closed-form least squares", True),
    HeatmapMetric("eval/decoder_mse", "Decoder MSE: G(z) vs D(P(z))", True),
    HeatmapMetric("eval/r2_true_to_learned", "R² true → learned", False),
    HeatmapMetric("eval/r2_learned_to_true", "R² learned → true", False),
    HeatmapMetric("eval/active_dims", "Active latent dimensions (KL > 0.01 nats)", False),
)
COLLAPSE_KEY = "eval/collapsed"


def bias_grid_summary(frame: pd.DataFrame) -> pd.DataFrame:
    keys = [m.key for m in BIAS_GRID_METRICS] + [COLLAPSE_KEY, "eval/pmi_baseline", "val/neg_elbo"]
    return cell_summary(frame, [ROW_AXIS, COLUMN_AXIS], keys)


def pivot(summary: pd.DataFrame, key: str) -> pd.DataFrame:
    """Cells as a bias (rows) × β (columns) table of means."""
    return summary.pivot(index=ROW_AXIS, columns=COLUMN_AXIS, values=key).sort_index().sort_index(axis=1)


def draw_heatmap(summary: pd.DataFrame, metric: HeatmapMetric, path: Path, title_suffix: str = "") -> Path:
    values = pivot(summary, metric.key)
    collapsed = pivot(summary, COLLAPSE_KEY) if COLLAPSE_KEY in summary else None
    n_seeds = pivot(summary, f"{metric.key}:n") if f"{metric.key}:n" in summary else None
    figure, axes = plt.subplots(figsize=(1.1 * values.shape[1] + 2.5, 0.55 * values.shape[0] + 1.8))
    image = axes.imshow(values.to_numpy(dtype=float), cmap="viridis_r" if metric.lower_is_better else "viridis",
                        aspect="auto", origin="lower")
    figure.colorbar(image, ax=axes, label=metric.key)
    axes.set_xticks(range(values.shape[1]), [f"{b:g}" for b in values.columns])
    axes.set_yticks(range(values.shape[0]), [f"{b:g}" for b in values.index])
    axes.set_xlabel("β (KL weight)")
    axes.set_ylabel("training bias μ")
    finite = values.to_numpy(dtype=float)
    middle = np.nanmean(finite) if np.isfinite(finite).any() else 0.0
    for row in range(values.shape[0]):
        for column in range(values.shape[1]):
            value = finite[row, column]
            text = "n/a" if np.isnan(value) else f"{value:.3g}"
            dark_cell = (value > middle) == metric.lower_is_better
            axes.text(column, row, text, ha="center", va="center", fontsize=7,
                      color="white" if dark_cell else "black")
            if collapsed is not None and collapsed.iloc[row, column] > 0:
                # hatched: at least one seed of this cell has no active latent, so its PMI means nothing
                axes.add_patch(plt.Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, hatch="///",
                                             edgecolor="red", linewidth=0))
    seeds = ""
    if n_seeds is not None:
        low, high = int(np.nanmin(n_seeds.to_numpy(dtype=float))), int(np.nanmax(n_seeds.to_numpy(dtype=float)))
        seeds = f", mean over {high if low == high else f'{low}–{high}'} seed{'s' if high > 1 else ''}"
    axes.set_title(f"{metric.title}{seeds}\nred hatching: collapsed (no active latent){title_suffix}", fontsize=9)
    figure.tight_layout()
    replace_atomically(path, lambda temporary: figure.savefig(temporary, dpi=120, format="png"))
    plt.close(figure)
    return path


def write_heatmaps(frame: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Heatmap PNGs per metric, `summary.csv` (means, stds, counts per cell) and `summary.md` (mean tables)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = bias_grid_summary(frame)
    replace_atomically(out_dir / "summary.csv", lambda temporary: summary.to_csv(temporary, index=False))
    paths = []
    sections = []
    for metric in BIAS_GRID_METRICS:
        if metric.key not in summary:
            continue
        name = metric.key.split("/", 1)[1]
        paths.append(draw_heatmap(summary, metric, out_dir / f"heatmap_{name}.png"))
        sections.append(f"### {metric.title}\n\n{pivot(summary, metric.key).to_markdown(floatfmt='.4g')}\n")
    write_text(out_dir / "summary.md", "rows: training bias μ; columns: β\n\n" + "\n".join(sections))
    return paths
