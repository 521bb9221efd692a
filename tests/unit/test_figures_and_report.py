"""Figures and the report say what the results table says.

Heatmaps (analysis/heatmaps.py) are read back from the drawn matplotlib figure: the image's cells, the axes' tick
labels, the cell annotations and the hatched rectangles, so a transposed pivot, a flipped axis, a mislabelled tick
or a hatch on the wrong cell fails. The report (analysis/report.py) is parsed as HTML: one row per trial, in the
table's order, each with its own configuration and the link to its own MLflow run.
"""
import math
from html.parser import HTMLParser

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from analysis import heatmaps
from analysis.load import write_sweep_record
from analysis.report import write_report
from tracking.run_layout import run_url, ui_base_url

BIASES = (3.0, 0.0, 1.5)  # deliberately unsorted, and 3 × 4: a transposed table cannot even have the right shape
BETAS = (8.0, 0.25, 4.0, 1.0)
COLLAPSED_SEEDS = {(3.0, 8.0): (0, 1), (1.5, 4.0): (1,)}  # cells with at least one collapsed seed get hatched
FAILED_CELL = (0.0, 8.0)  # both seeds diverged: no value, "n/a"


def cell_value(bias: float, beta: float, metric_index: int) -> float:
    """A distinct value per (bias, β) and per metric, exact in 3 significant digits (the annotation's format)."""
    return round(1 + sorted(BIASES).index(bias) + 0.1 * sorted(BETAS).index(beta) + 0.01 * metric_index, 2)


def bias_grid_results() -> pd.DataFrame:
    rows = []
    for bias in BIASES:
        for beta in BETAS:
            for seed, spread in ((0, -0.004), (1, 0.004)):  # seeds straddle the value: the mean is the value
                failed = (bias, beta) == FAILED_CELL
                row = {"trial_id": f"cell_b{bias:g}_beta{beta:g}_s{seed}", "bias": bias, "beta": beta, "seed": seed,
                       "status": "diverged" if failed else "completed",
                       "eval/collapsed": float(seed in COLLAPSED_SEEDS.get((bias, beta), ()))}
                for index, metric in enumerate(heatmaps.BIAS_GRID_METRICS):
                    row[metric.key] = math.nan if failed else cell_value(bias, beta, index) + spread
                rows.append(row)
    return pd.DataFrame(rows)


def row_positions(image) -> list[float]:
    """Data y of each array row's centre, whatever the image's origin and extent."""
    left, right, bottom, top = image.get_extent()
    rows = image.get_array().shape[0]
    start, span = (bottom, top - bottom) if image.origin == "lower" else (top, bottom - top)
    return [start + (i + 0.5) * span / rows for i in range(rows)]


def column_positions(image) -> list[float]:
    left, right, _, _ = image.get_extent()
    columns = image.get_array().shape[1]
    return [left + (j + 0.5) * (right - left) / columns for j in range(columns)]


def tick_value(ticks: np.ndarray, labels: list[str], position: float) -> float:
    """The number written at the tick at `position` (there must be one there)."""
    index = int(np.argmin(np.abs(ticks - position)))
    assert ticks[index] == pytest.approx(position), f"no tick at {position}"
    return float(labels[index])


@pytest.fixture(scope="module")
def drawn_figures(tmp_path_factory):
    """write_heatmaps on the hand-built table, with each figure kept (not closed) so its axes can be read."""
    kept, close = [], plt.close
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(heatmaps.plt, "close", kept.append)
        paths = heatmaps.write_heatmaps(bias_grid_results(), tmp_path_factory.mktemp("heatmaps"))
    yield dict(zip([p.stem.removeprefix("heatmap_") for p in paths], kept, strict=True))
    for figure in kept:
        close(figure)


@pytest.mark.parametrize(("index", "metric"), list(enumerate(heatmaps.BIAS_GRID_METRICS)),
                         ids=[m.key for m in heatmaps.BIAS_GRID_METRICS])
def test_heatmap_cells_hold_the_seed_mean_at_bias_row_and_beta_column(drawn_figures, index, metric):
    figure = drawn_figures[metric.key.split("/", 1)[1]]
    axes = next(a for a in figure.axes if a.images)  # the heatmap, not the colorbar
    image = axes.images[0]
    values = np.ma.filled(np.ma.asarray(image.get_array()).astype(float), np.nan)
    assert values.shape == (len(BIASES), len(BETAS))  # bias as rows, β as columns
    assert "bias" in axes.get_ylabel() and "β" in axes.get_xlabel()
    x_ticks, x_labels = axes.get_xticks(), [t.get_text() for t in axes.get_xticklabels()]
    y_ticks, y_labels = axes.get_yticks(), [t.get_text() for t in axes.get_yticklabels()]
    rows = [tick_value(y_ticks, y_labels, y) for y in row_positions(image)]
    columns = [tick_value(x_ticks, x_labels, x) for x in column_positions(image)]
    assert sorted(rows) == sorted(BIASES) and sorted(columns) == sorted(BETAS)  # every cell of the grid, once
    for i, bias in enumerate(rows):
        for j, beta in enumerate(columns):
            if (bias, beta) == FAILED_CELL:
                assert np.isnan(values[i, j])
            else:
                assert values[i, j] == pytest.approx(cell_value(bias, beta, index), abs=1e-9), (bias, beta)
    # the printed numbers agree with the colours, cell by cell, at the ticks' coordinates
    annotations = {(round(t.get_position()[0], 6), round(t.get_position()[1], 6)): t.get_text() for t in axes.texts}
    assert len(annotations) == len(BIASES) * len(BETAS)
    for (x, y), text in annotations.items():
        bias, beta = tick_value(y_ticks, y_labels, y), tick_value(x_ticks, x_labels, x)
        expected = "n/a" if (bias, beta) == FAILED_CELL else f"{cell_value(bias, beta, index):.3g}"
        assert text == expected, (bias, beta)


def test_heatmap_hatches_exactly_the_cells_with_a_collapsed_seed(drawn_figures):
    for name, figure in drawn_figures.items():
        axes = next(a for a in figure.axes if a.images)
        x_ticks, x_labels = axes.get_xticks(), [t.get_text() for t in axes.get_xticklabels()]
        y_ticks, y_labels = axes.get_yticks(), [t.get_text() for t in axes.get_yticklabels()]
        hatched = set()
        for patch in axes.patches:
            if not patch.get_hatch():
                continue
            assert (patch.get_width(), patch.get_height()) == (1, 1)  # one whole cell
            x, y = patch.get_x() + 0.5, patch.get_y() + 0.5
            hatched.add((tick_value(y_ticks, y_labels, y), tick_value(x_ticks, x_labels, x)))
        assert hatched == set(COLLAPSED_SEEDS), name
        assert "hatching" in axes.get_title() and "collapsed" in axes.get_title()  # the figure explains the marker


def test_heatmap_title_states_how_many_seeds_each_cell_averages(drawn_figures):
    axes = next(a for a in drawn_figures["pmi"].axes if a.images)
    assert "0–2 seeds" in axes.get_title()  # the diverged cell has 0 completed seeds, the others 2


# ---- report.html -------------------------------------------------------------------------------------------------

class Tables(HTMLParser):
    """Every <table> as a list of rows; each cell as (text, href of its link or None)."""

    def __init__(self):
        super().__init__()
        self.tables, self.headings, self._cell, self._href = [], [], None, None
        self._in_heading = False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell, self._href = "", None
        elif tag == "a" and self._cell is not None:
            self._href = dict(attrs).get("href")
        elif tag == "h2":
            self._in_heading = True
            self.headings.append(("", len(self.tables)))

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append((self._cell, self._href))
            self._cell = None
        elif tag == "h2":
            self._in_heading = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        if self._in_heading:
            text, index = self.headings[-1]
            self.headings[-1] = (text + data, index)

    def table_after(self, heading: str) -> list[list[tuple[str, str | None]]]:
        index = next(i for text, i in self.headings if text == heading)
        return self.tables[index]


def two_d_results() -> pd.DataFrame:
    rows = []
    for dataset in ("8gaussians", "rings"):
        for prior in ("standard", "mog"):
            for seed in (0, 1):
                rows.append({"trial_id": f"{dataset}-{prior}-{seed}", "dataset": dataset, "prior": prior,
                             "seed": seed, "status": "completed", "eval/kl": 0.1 * (seed + 1), "eval/jsd": 0.02,
                             "mlflow_run_id": f"{dataset[:2]}{prior[:2]}{seed}0123456789abcdef"})
    rows[-1].update(status="error", mlflow_run_id=None)  # a trial whose run was never created
    return pd.DataFrame(rows)


def bias_grid_report_results() -> pd.DataFrame:
    frame = bias_grid_results()
    frame["mlflow_run_id"] = [f"{i:032x}" for i in range(len(frame))]
    frame.loc[frame["status"] == "diverged", "mlflow_run_id"] = ""  # no run for the failed cell's trials
    return frame


@pytest.mark.parametrize(("results", "label_columns", "uri"), [
    (bias_grid_report_results, ("bias", "beta", "seed"), "http://mlflow.example:5000/"),
    (two_d_results, ("dataset", "prior", "seed"), "sqlite:////tmp/somewhere/mlflow.db"),
], ids=["bias_grid-server", "introvae_2d-sqlite"])
def test_report_lists_every_trial_in_order_with_its_label_status_and_own_run_link(tmp_path, results,
                                                                                   label_columns, uri):
    frame = results()
    frame.to_parquet(tmp_path / "results.parquet")
    write_sweep_record(tmp_path, {"study": "s", "name": "n", "status": "FINISHED", "mlflow_uri": uri,
                                  "experiment_id": "17", "parent_run_id": "parent0"})  # no columns: the fallback
    parser = Tables()
    parser.feed(write_report(tmp_path).read_text(encoding="utf-8"))
    table = parser.table_after("Trials")
    header = [text for text, _ in table[0]]
    assert header[-1] == "MLflow" and set(label_columns) | {"status"} <= set(header)
    body = table[1:]
    assert len(body) == len(frame)  # every trial, none dropped or doubled
    base = ui_base_url(uri)
    for (_, trial), cells in zip(frame.iterrows(), body, strict=True):
        shown = dict(zip(header, cells, strict=True))
        for column in label_columns:
            text = shown[column][0]
            assert (float(text) == trial[column]) if isinstance(trial[column], (int, float)) else \
                (text == trial[column]), (column, text, trial[column])
        assert shown["status"][0] == trial["status"]
        run_id = trial["mlflow_run_id"]
        if isinstance(run_id, str) and run_id:
            assert shown["MLflow"][1] == run_url(base, "17", run_id)  # this trial's run, not a neighbour's
        else:
            assert shown["MLflow"] == ("—", None)
    hrefs = [href for row in body for _, href in row if href]
    with_runs = [r for r in frame["mlflow_run_id"] if isinstance(r, str) and r]
    assert sorted(hrefs) == sorted(run_url(base, "17", r) for r in with_runs)  # each run linked exactly once
    expected_base = "http://127.0.0.1:5000" if uri.startswith("sqlite") else "http://mlflow.example:5000"
    assert all(h.startswith(f"{expected_base}/#/experiments/17/runs/") for h in hrefs)


def test_report_without_tracking_lists_trials_but_links_nothing(tmp_path):
    frame = two_d_results()
    frame.to_parquet(tmp_path / "results.parquet")
    write_sweep_record(tmp_path, {"study": "s", "name": "n", "status": "FINISHED", "mlflow_uri": None})
    page = write_report(tmp_path).read_text(encoding="utf-8")
    parser = Tables()
    parser.feed(page)
    body = parser.table_after("Trials")[1:]
    assert len(body) == len(frame)
    assert all(row[-1] == ("—", None) for row in body)
    assert "href=" not in page and "none (--no-mlflow)" in page
