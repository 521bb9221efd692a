"""`python -m analysis heatmaps --results DIR` or `--mlflow-uri URI --experiment NAME [--sweep NAME]`."""
import argparse
import sys
from pathlib import Path

from analysis.heatmaps import write_heatmaps
from analysis.load import RESULTS_FILE, ResultsError, load_mlflow, load_parquet


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
    source = heatmaps.add_mutually_exclusive_group(required=True)
    source.add_argument("--results", type=Path, help="a sweep's results directory (or its results.parquet)")
    source.add_argument("--mlflow-uri", help="tracking URI to read the sweep from, e.g. sqlite:///mlflow.db")
    heatmaps.add_argument("--experiment", default="bias_grid", help="MLflow experiment (default: bias_grid)")
    heatmaps.add_argument("--sweep", help="sweep name in MLflow (default: the newest)")
    heatmaps.add_argument("--out", type=Path, help="where to write figures (default: the results directory, or "
                          "results/bias_grid/<sweep> for MLflow)")
    return parser


def heatmaps_command(args) -> None:
    if args.results is not None:
        frame = load_parquet(args.results)
        out = args.out or (args.results if args.results.is_dir() else args.results.parent)
    else:
        frame = load_mlflow(args.mlflow_uri, args.experiment, args.sweep)
        out = args.out or Path("results") / args.experiment / str(frame["sweep"].iloc[0])
        out.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(out / RESULTS_FILE, index=False)
    paths = write_heatmaps(frame, out)
    print(f"{len(frame)} trials -> {len(paths)} heatmaps in {out}")
    for path in paths:
        print(f"  {path}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        {"heatmaps": heatmaps_command}[args.command](args)
    except ResultsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
