"""One small figure per cell, drawn by the driver when the cell ends and logged to its MLflow run.

Bias grid: test images, their reconstructions and prior samples (`plot/images`). 2D Soft-IntroVAE: the learned
density, generated points and the latent modes (`plot/density`, …). Drawn with matplotlib's object API (no pyplot
state), because the tracking thread draws them while the driver goes on.
"""
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.tables import FIGURES as DENSITY_PANELS

TRIAL_FIGURE_DIR = "trials"  # under the sweep's results directory: trials/<cell id>.png
IMAGE_ROWS = ("test images", "reconstructions", "prior samples")


def has_trial_figure(metrics: dict) -> bool:
    return "plot/images" in metrics or "plot/density" in metrics


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=90)
    return path


def _image_grid(row: dict, path: Path) -> Path:
    images = np.asarray(row["plot/images"], dtype=np.uint8)  # (3, count, D)
    kinds, count, pixels = images.shape
    side = int(round(np.sqrt(pixels)))
    figure = Figure(figsize=(count * 0.7, kinds * 0.8 + 0.4))
    axes = figure.subplots(kinds, count, squeeze=False)
    for i in range(kinds):
        for j in range(count):
            axis = axes[i][j]
            axis.imshow(images[i, j].reshape(side, side), cmap="gray", vmin=0, vmax=255)
            axis.set_xticks([])
            axis.set_yticks([])
        axes[i][0].set_ylabel(IMAGE_ROWS[i], fontsize=6, rotation=0, ha="right", va="center")
    figure.suptitle(_title(row), fontsize=8)
    figure.subplots_adjust(left=0.2, wspace=0.05, hspace=0.05)
    return _save(figure, path)


def _density_panels(row: dict, path: Path) -> Path:
    panels = [(key, title, draw) for key, title, draw in DENSITY_PANELS.values() if row.get(key) is not None]
    figure = Figure(figsize=(2.6 * len(panels), 2.9))
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for axis, (_, title, draw) in zip(axes, panels, strict=True):
        draw(axis, row)
        axis.set_title(textwrap.fill(title, 36), fontsize=7)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(_title(row), fontsize=8)
    figure.tight_layout()
    return _save(figure, path)


def _title(row: dict) -> str:
    shown = [k for k in ("dataset", "prior", "bias", "beta", "seed") if k in row]
    return "  ".join(f"{k} {row[k]}" for k in shown)


def trial_figure(row: dict, path: Path) -> Path | None:
    """Draw the cell's figure to `path` from its final metrics and config (one dict); None if it has no arrays."""
    if row.get("plot/images") is not None:
        return _image_grid(row, path)
    if row.get("plot/density") is not None:
        return _density_panels(row, path)
    return None
