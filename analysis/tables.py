"""The 2D Soft-IntroVAE table (dataset × prior, mean ± std/√n over seeds), each learned prior against the standard
prior (the paper's claim: learned priors match or beat it), and the density figure grid."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tracking.files import replace_atomically, write_text  # noqa: E402

TABLE_COLUMNS = {  # result key -> (column title, factor)
    "eval/kl": ("KL", 1.0),
    "eval/jsd_reference": ("JSD (reference's direction)", 1.0),
    "eval/jsd": ("JSD (textbook)", 1.0),
    "eval/gnelbo": ("gnELBO ×1e7", 1e7),
    "eval/active_modes": ("active modes", 1.0),
    "eval/warmup_iterations_per_second": ("warm-up it/s", 1.0),
    "eval/intro_iterations_per_second": ("introspective it/s", 1.0),
}
ROWS = ["dataset", "prior"]
PRIOR_ORDER = {"standard": 0, "mog": 1, "vamp": 2}
BASELINE_PRIOR = "standard"
COMPARED = ("KL", "JSD (textbook)")  # titles of TABLE_COLUMNS; lower is better for both
VERDICT_STANDARD_ERRORS = 2.0  # a difference counts once it is beyond ±2 standard errors of the difference


def table_2d(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset × prior: for each metric its mean and standard error std/√n over completed seeds."""
    return seed_table(frame, ROWS, TABLE_COLUMNS)


def seed_table(frame: pd.DataFrame, rows: list[str], columns: dict) -> pd.DataFrame:
    """One row per combination of `rows`; for each metric of `columns` (key -> (title, factor)) its mean and
    standard error std/√n over the completed seeds. Priors in their natural order."""
    done = frame[frame["status"] == "completed"]
    table_rows = []
    for values, group in done.groupby(rows):
        row = {**dict(zip(rows, values, strict=True)), "seeds": len(group)}
        for key, (title, factor) in columns.items():
            series = group[key].dropna() * factor if key in group else pd.Series(dtype=float)
            row[title] = series.mean() if len(series) else np.nan
            row[f"{title} ±"] = series.std(ddof=1) / np.sqrt(len(series)) if len(series) > 1 else np.nan
        table_rows.append(row)
    table = pd.DataFrame(table_rows)
    if table.empty:
        return table
    return table.sort_values(rows, key=lambda c: c.map(PRIOR_ORDER) if c.name == "prior" else c)


def markdown(table: pd.DataFrame, rows: list[str] = ROWS, columns: dict = TABLE_COLUMNS) -> str:
    """'mean ± se' cells (se omitted with one seed)."""
    shown = table[[*rows, "seeds"]].copy()
    for title, _ in columns.values():
        if title not in table:
            continue
        shown[title] = [_with_error(m, e) for m, e in zip(table[title], table[f"{title} ±"], strict=True)]
    return shown.to_markdown(index=False)


def _with_error(value: float, error: float, number_format: str = ".3g") -> str:
    """'value ± error' (the error omitted where there is none, e.g. one seed; '—' without a value)."""
    if np.isnan(value):
        return "—"
    return f"{value:{number_format}}" + ("" if np.isnan(error) else f" ± {error:.2g}")


def prior_comparison(table: pd.DataFrame) -> pd.DataFrame:
    """Each learned prior against the standard prior on its dataset, for each metric of COMPARED: the difference of
    the seed means Δ = learned − standard, its standard error √(se_learned² + se_standard²), and a verdict: lower
    (Δ < −2 se), higher (Δ > 2 se) or level; none with fewer than two seeds on either side (no spread to judge by).
    `table`: table_2d's. Empty when no dataset has both."""
    rows = []
    for dataset, group in table.groupby("dataset"):
        baseline = group[group["prior"] == BASELINE_PRIOR]
        if baseline.empty:
            continue
        base = baseline.iloc[0]
        for _, learned in group[group["prior"] != BASELINE_PRIOR].iterrows():
            row = {"dataset": dataset, "prior": learned["prior"], "seeds": f"{learned['seeds']} vs {base['seeds']}"}
            for title in COMPARED:
                difference = learned[title] - base[title]
                error = np.hypot(learned[f"{title} ±"], base[f"{title} ±"])  # NaN with one seed on either side
                row[f"Δ {title}"], row[f"Δ {title} ±"] = difference, error
                row[f"{title}: learned is"] = _verdict(difference, error)
            rows.append(row)
    return pd.DataFrame(rows)


def _verdict(difference: float, error: float) -> str:
    if np.isnan(difference) or np.isnan(error):
        return "—"
    if difference < -VERDICT_STANDARD_ERRORS * error:
        return "lower"
    if difference > VERDICT_STANDARD_ERRORS * error:
        return "higher"
    return "level"


def comparison_markdown(comparison: pd.DataFrame) -> str:
    """The comparison table, then per learned prior on how many datasets it matches or beats the standard prior."""
    shown = comparison[["dataset", "prior", "seeds"]].copy()
    for title in COMPARED:
        shown[f"Δ {title}"] = [_with_error(d, e, "+.3g")
                               for d, e in zip(comparison[f"Δ {title}"], comparison[f"Δ {title} ±"], strict=True)]
        shown[f"{title}: learned is"] = comparison[f"{title}: learned is"]
    lines = [shown.to_markdown(index=False), ""]
    verdict = f"{COMPARED[0]}: learned is"
    for prior, group in comparison.groupby("prior", sort=False):
        judged = group[group[verdict] != "—"]
        matched = int(judged[verdict].isin(("lower", "level")).sum())
        lines.append(f"- {prior}: matches or beats the standard prior's {COMPARED[0]} on {matched} of {len(judged)} "
                     f"datasets with ≥ 2 seeds each ({int((judged[verdict] == 'lower').sum())} lower)")
    return "\n".join(lines)


def _panel_grid(done: pd.DataFrame, title: str, path: Path, draw) -> Path:
    """One panel per dataset (rows) × prior (columns), drawn by draw(axis, first completed seed's row)."""
    datasets = sorted(done["dataset"].unique())
    priors = sorted(done["prior"].unique(), key=PRIOR_ORDER.get)
    figure, axes = plt.subplots(len(datasets), len(priors), figsize=(2.6 * len(priors), 2.6 * len(datasets)),
                                squeeze=False)
    for i, dataset in enumerate(datasets):
        for j, prior in enumerate(priors):
            axis = axes[i][j]
            axis.set_xticks([])
            axis.set_yticks([])
            cell = done[(done["dataset"] == dataset) & (done["prior"] == prior)].sort_values("seed")
            if len(cell):
                draw(axis, cell.iloc[0])
            if i == 0:
                axis.set_title(prior)
            if j == 0:
                axis.set_ylabel(dataset)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    replace_atomically(path, lambda temporary: figure.savefig(temporary, dpi=110, format="png"))
    plt.close(figure)
    return path


def _points(row, key: str) -> np.ndarray:
    return np.asarray(row[key], dtype=float).reshape(-1, 2)


def _draw_density(axis, row) -> None:
    values = np.asarray(row["plot/density"], dtype=float)
    side = int(round(np.sqrt(len(values))))
    axis.imshow(values.reshape(side, side), origin="lower", cmap="magma")


def _draw_samples(axis, row) -> None:
    points = _points(row, "plot/samples")
    axis.scatter(points[:, 0], points[:, 1], s=1, alpha=0.5)


def _draw_latent(axis, row) -> None:
    means = _points(row, "plot/latent_means")
    axis.scatter(means[:, 0], means[:, 1], s=1, alpha=0.4, color="tab:blue")
    prior_means = row.get("plot/prior_means")
    if isinstance(prior_means, (list, np.ndarray)) and len(prior_means):
        modes = _points(row, "plot/prior_means")
        weights = np.asarray(row["plot/prior_weights"], dtype=float)
        axis.scatter(modes[:, 0], modes[:, 1], s=400 * weights / weights.max(), color="tab:red", marker="x")


FIGURES = {  # file -> (result key it needs, title, painter)
    "densities.png": ("plot/density", "Learned density exp(−negative ELBO)", _draw_density),
    "samples.png": ("plot/samples", "1,000 generated points", _draw_samples),
    "latent_modes.png": ("plot/latent_means", "Latent means of data (blue), prior modes (red, ∝ weight)",
                         _draw_latent),
}


def figure_grids(frame: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Density, sample and latent-mode figures (from results.parquet: MLflow does not hold these arrays)."""
    paths = []
    for name, (key, title, draw) in FIGURES.items():
        if key not in frame:
            continue
        done = frame[(frame["status"] == "completed") & frame[key].notna()]
        if not done.empty:
            paths.append(_panel_grid(done, title, out_dir / name, draw))
    return paths


def write_introvae_tables(frame: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = table_2d(frame)
    paths = []
    if not table.empty:
        replace_atomically(out_dir / "table_2d.csv", lambda temporary: table.to_csv(temporary, index=False))
        write_text(out_dir / "table_2d.md", markdown(table) + "\n")
        paths += [out_dir / "table_2d.csv", out_dir / "table_2d.md"]
        comparison = prior_comparison(table)
        if not comparison.empty:
            replace_atomically(out_dir / "prior_comparison.csv",
                               lambda temporary: comparison.to_csv(temporary, index=False))
            write_text(out_dir / "prior_comparison.md", comparison_markdown(comparison) + "\n")
            paths += [out_dir / "prior_comparison.csv", out_dir / "prior_comparison.md"]
    return paths + figure_grids(frame, out_dir)
