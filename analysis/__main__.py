"""python -m analysis heatmaps|tables --results DIR   (or --mlflow-uri URI [--experiment NAME] [--sweep NAME])

heatmaps: the β × bias study's heatmaps; tables: the Soft-IntroVAE 2D table (dataset × prior) and density grid.
"""
import argparse
import sys
from pathlib import Path

from analysis.heatmaps import write_heatmaps
from analysis.load import RESULTS_FILE, ResultsError, load_mlflow, load_parquet
from analysis.tables import write_introvae_tables


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    heatmaps = commands.add_parser(
        "heatmaps",
        help="β × bias heatmaps of the bias-grid study (PMI, decoder MSE, R², active dims)",
        description="Average a bias-grid sweep over seeds and draw annotated β × bias heatmaps (PNG), with "
                    "summary.csv/summary.md beside them. Reads results.parquet, or MLflow child runs (then also "
                    "writes results.parquet to --out).",
    )
    tables = commands.add_parser(
        "tables",
        help="Soft-IntroVAE 2D table: dataset × prior, KL, JSD, gnELBO×1e7, active modes (mean ± std/√n)",
        description="The 2D table as table_2d.md and table_2d.csv, and densities.png (a density per dataset × "
                    "prior; from results.parquet only: MLflow does not hold the density images).",
    )
    for command, experiment in ((heatmaps, "bias_grid"), (tables, "introvae")):
        source = command.add_mutually_exclusive_group(required=True)
        source.add_argument("--results", type=Path, help="a sweep's results directory (or its results.parquet)")
        source.add_argument("--mlflow-uri", help="tracking URI to read the sweep from, e.g. sqlite:///mlflow.db")
        command.add_argument("--experiment", default=experiment, help=f"MLflow experiment (default: {experiment})")
        command.add_argument("--sweep", help="sweep name in MLflow (default: the newest)")
        command.add_argument("--out", type=Path, help="where to write (default: the results directory, or "
                             f"results/{experiment}/<sweep> for MLflow)")
    return parser


def load_results(args):
    """The results table and where outputs go; a table read from MLflow is also written there as Parquet."""
    if args.results is not None:
        return load_parquet(args.results), args.out or (args.results if args.results.is_dir() else args.results.parent)
    frame = load_mlflow(args.mlflow_uri, args.experiment, args.sweep)
    out = args.out or Path("results") / args.experiment / str(frame["sweep"].iloc[0])
    out.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out / RESULTS_FILE, index=False)
    return frame, out


def heatmaps_command(args) -> None:
    frame, out = load_results(args)
    paths = write_heatmaps(frame, out)
    print(f"{len(frame)} trials -> {len(paths)} heatmaps in {out}")
    for path in paths:
        print(f"  {path}")


def tables_command(args) -> None:
    frame, out = load_results(args)
    paths = write_introvae_tables(frame, out)
    print(f"{len(frame)} trials -> {', '.join(p.name for p in paths)} in {out}")
    if (Path(out) / "table_2d.md").exists():
        print((Path(out) / "table_2d.md").read_text())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        {"heatmaps": heatmaps_command, "tables": tables_command}[args.command](args)
    except ResultsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
