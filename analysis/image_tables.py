"""The Soft-IntroVAE image table (dataset × prior × K × r_entropy: FID of generated and reconstructed images, linear
probe accuracies, assignment entropy, active modes; mean ± std/√n over seeds) and its FID figure."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.tables import PRIOR_ORDER, markdown, seed_table  # noqa: E402
from tracking.files import replace_atomically, write_text  # noqa: E402

ROWS = ["dataset", "prior", "num_components", "r_entropy"]
COLUMNS = {  # result key -> (column title, factor)
    "eval/fid_gen": ("FID gen", 1.0),
    "eval/fid_rec": ("FID rec", 1.0),
    "eval/probe_svm": ("probe SVM %", 100.0),
    "eval/probe_knn5": ("kNN-5 %", 100.0),
    "eval/probe_knn100": ("kNN-100 %", 100.0),
    "eval/assignment_entropy": ("assignment entropy", 1.0),
    "eval/active_modes": ("active modes", 1.0),
}
TABLE_FILE = "table_images.md"


def image_table(frame: pd.DataFrame) -> pd.DataFrame:
    return seed_table(frame, ROWS, COLUMNS)


def fid_figure(table: pd.DataFrame, path: Path) -> Path:
    """FID of generated images against r_entropy, one line per prior × K, one panel per dataset (error bars: std/√n
    over seeds)."""
    datasets = sorted(table["dataset"].unique())
    figure, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.4), squeeze=False)
    for axis, dataset in zip(axes[0], datasets, strict=True):
        part = table[table["dataset"] == dataset]
        for (prior, k), line in part.groupby(["prior", "num_components"], sort=False):
            label = prior if prior == "standard" else f"{prior} K={k}"
            axis.errorbar(line["r_entropy"].astype(str), line["FID gen"], yerr=line["FID gen ±"].fillna(0),
                          marker="o", capsize=3, label=label)
        axis.set_title(dataset)
        axis.set_xlabel("r_entropy")
        axis.set_ylabel("FID of generated images")
        axis.legend(fontsize=7)
    figure.tight_layout()
    replace_atomically(path, lambda temporary: figure.savefig(temporary, dpi=110, format="png"))
    plt.close(figure)
    return path


def write_image_tables(frame: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = image_table(frame)
    if table.empty:
        return []
    table = table.sort_values(ROWS, key=lambda c: c.map(PRIOR_ORDER) if c.name == "prior" else c)
    count = frame["eval/fid_images"].dropna() if "eval/fid_images" in frame else pd.Series(dtype=float)
    note = f"FID on {int(count.max()):,} images (generated or reconstructed vs training)\n\n" if len(count) else ""
    replace_atomically(out_dir / "table_images.csv", lambda temporary: table.to_csv(temporary, index=False))
    write_text(out_dir / TABLE_FILE, note + markdown(table, ROWS, COLUMNS) + "\n")
    return [out_dir / "table_images.csv", out_dir / TABLE_FILE, fid_figure(table, out_dir / "fid.png")]
