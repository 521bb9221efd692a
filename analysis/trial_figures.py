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
from tracking.files import replace_atomically

TRIAL_FIGURE_DIR = "trials"  # under the sweep's results directory: trials/<cell id>.png
IMAGE_ROWS = ("test images", "reconstructions", "prior samples", "prior modes")


def has_trial_figure(metrics: dict) -> bool:
    return "plot/images" in metrics or "plot/density" in metrics


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    replace_atomically(path, lambda temporary: figure.savefig(temporary, dpi=90, format="png"))
    return path


def image_mosaic(images: np.ndarray) -> np.ndarray:
    """(rows, count, side²) uint8 images -> one (rows·(side+1) − 1, count·(side+1) − 1) array: image (i, j) at tile
    (i, j), tiles separated by 1-pixel white (255) gaps."""
    rows, count, pixels = images.shape
    side = int(round(np.sqrt(pixels)))
    tiles = np.pad(images.reshape(rows, count, side, side), ((0, 0), (0, 0), (0, 1), (0, 1)), constant_values=255)
    return tiles.transpose(0, 2, 1, 3).reshape(rows * (side + 1), count * (side + 1))[:-1, :-1]


def _image_grid(row: dict, path: Path, title: str) -> Path:
    """The images as one mosaic in one axes (rows: IMAGE_ROWS), 1-pixel white gaps between tiles: one imshow
    instead of an axes per image (~10× faster to draw, and a population's cells all end at once)."""
    images = np.asarray(row["plot/images"], dtype=np.uint8)  # (3, count, D)
    kinds, count, pixels = images.shape
    side = int(round(np.sqrt(pixels)))
    mosaic = image_mosaic(images)
    figure = Figure(figsize=(count * 0.7, kinds * 0.7 + 0.35))
    axis = figure.subplots()
    axis.imshow(mosaic, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    axis.set_xticks([])
    axis.set_yticks([(side + 1) * i + side / 2 for i in range(kinds)], IMAGE_ROWS[:kinds], fontsize=6)
    axis.tick_params(length=0)
    for spine in axis.spines.values():
        spine.set_visible(False)
    figure.suptitle(title, fontsize=8)
    figure.subplots_adjust(left=0.17, right=0.98, bottom=0.02, top=0.9)
    return _save(figure, path)


def _density_panels(row: dict, path: Path, title: str) -> Path:
    panels = [(key, title, draw) for key, title, draw in DENSITY_PANELS.values() if row.get(key) is not None]
    figure = Figure(figsize=(2.6 * len(panels), 2.9))
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for axis, (_, title, draw) in zip(axes, panels, strict=True):
        draw(axis, row)
        axis.set_title(textwrap.fill(title, 36), fontsize=7)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(title, fontsize=8)
    figure.tight_layout()
    return _save(figure, path)


def trial_figure(row: dict, path: Path, title: str = "") -> Path | None:
    """Draw the cell's figure to `path` from its final metrics and config (one dict); None if it has no arrays."""
    if row.get("plot/images") is not None:
        return _image_grid(row, path, title)
    if row.get("plot/density") is not None:
        return _density_panels(row, path, title)
    return None
