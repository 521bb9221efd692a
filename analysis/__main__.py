"""python -m analysis heatmaps|tables|images|report|sync …

heatmaps: the β × bias study's heatmaps; tables: the Soft-IntroVAE 2D table (dataset × prior) and density grid;
images: the Soft-IntroVAE image table (dataset × prior × K × r_entropy) and FID figure; report: a sweep's
self-contained report.html; sync: fill MLflow with what a sweep's journal holds and MLflow lacks.
"""
import argparse
import sys
from pathlib import Path

import pandas as pd

from analysis.heatmaps import write_heatmaps
from analysis.load import RESULTS_FILE, ResultsError, combine_pieces, load_mlflow, load_parquet, write_parquet
from analysis.tables import write_introvae_tables
from tracking.secrets import redact


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
        description="The 2D table as table_2d.md and table_2d.csv; each learned prior against the standard prior "
                    "(difference of seed means ± its standard error, lower/level/higher beyond ±2 se) as "
                    "prior_comparison.md and .csv; densities.png, samples.png and latent_modes.png (one panel per "
                    "dataset × prior; from results.parquet only: MLflow does not hold these arrays).",
    )
    images = commands.add_parser(
        "images",
        help="Soft-IntroVAE image table: dataset × prior × K × r_entropy, FID gen/rec, probe, modes (mean ± std/√n)",
        description="The image table as table_images.md and table_images.csv, and fid.png (FID against r_entropy).",
    )
    for command, experiment in ((heatmaps, "bias_grid"), (tables, "introvae"), (images, "introvae_images")):
        source = command.add_mutually_exclusive_group(required=True)
        source.add_argument("--results", type=Path, nargs="+",
                            help="a sweep's results directory (or its results.parquet); several are read as one "
                                 "table (a protocol run in pieces; then give --out); a cell run again in a later "
                                 "one counts as its last run")
        source.add_argument("--mlflow-uri", help="tracking URI to read the sweep from, e.g. sqlite:///mlflow.db")
        command.add_argument("--experiment", default=experiment, help=f"MLflow experiment (default: {experiment})")
        command.add_argument("--sweep", help="sweep name in MLflow (default: the newest)")
        command.add_argument("--out", type=Path, help="where to write (default: the results directory, or "
                             f"results/{experiment}/<sweep> for MLflow)")
    report = commands.add_parser(
        "report", help="a sweep's self-contained report.html (figures, tables, settings, links to MLflow runs)",
        description="Writes DIR/report.html from the sweep's results directory and logs it to the sweep's parent "
                    "run (on --mlflow-uri, else the URI the sweep used; skipped with a warning if unreachable).")
    report.add_argument("--results", type=Path, required=True, help="the sweep's results directory")
    report.add_argument("--mlflow-uri", help="tracking URI holding the parent run (default: the sweep's)")
    sync = commands.add_parser(
        "sync", help="backfill MLflow from a sweep's results directory (after the server dropped, or --no-mlflow)",
        description="Replays the sweep's tracking journal (tracking.jsonl) into MLflow: creates the runs that are "
                    "missing and adds only the params, metric points (by key and step), statuses and artifacts "
                    "MLflow lacks, so nothing is missing and nothing is duplicated; safe to run again.")
    sync.add_argument("--results", type=Path, required=True, help="the sweep's results directory")
    sync.add_argument("--mlflow-uri", required=True, help="tracking URI to fill, e.g. http://127.0.0.1:5000")
    return parser


def load_results(args):
    """The results table and where outputs go; a table read from MLflow is also written there as Parquet."""
    if args.results is not None:
        if len(args.results) > 1 and args.out is None:
            raise ResultsError("several --results are combined into one table: say where it goes with --out")
        frame, replaced = combine_pieces([load_parquet(path) for path in args.results])
        if replaced:
            print(f"run again in a later --results, its last run counts: {'; '.join(replaced)}")
        if len(args.results) > 1:
            args.out.mkdir(parents=True, exist_ok=True)
            write_parquet(frame, args.out / RESULTS_FILE)
        first = args.results[0]
        return frame, args.out or (first if first.is_dir() else first.parent)
    frame = load_mlflow(args.mlflow_uri, args.experiment, args.sweep)
    out = args.out or Path("results") / args.experiment / str(frame["sweep"].iloc[0])
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(frame, out / RESULTS_FILE)
    return frame, out


def require_columns(frame: pd.DataFrame, columns: tuple[str, ...], command: str, other: str) -> None:
    """Results of the other study (or a foreign table) are one clear error, not a KeyError deep in a figure."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        studies = sorted(set(frame["study"].astype(str))) if "study" in frame.columns else ["unknown"]
        raise ResultsError(f"`{command}` needs results with columns {', '.join(columns)}; these ({', '.join(studies)} "
                           f"results) have no {missing[0]!r}: for them use `python -m analysis {other}`")


def heatmaps_command(args) -> None:
    frame, out = load_results(args)
    require_columns(frame, ("bias", "beta"), "heatmaps", "tables")
    paths = write_heatmaps(frame, out)
    print(f"{len(frame)} trials -> {len(paths)} heatmaps in {out}")
    for path in paths:
        print(f"  {path}")


def tables_command(args) -> None:
    frame, out = load_results(args)
    require_columns(frame, ("dataset", "prior"), "tables", "heatmaps")
    paths = write_introvae_tables(frame, out)
    print(f"{len(frame)} trials -> {', '.join(p.name for p in paths)} in {out}")
    for name in ("table_2d.md", "prior_comparison.md"):
        if (Path(out) / name).exists():
            print((Path(out) / name).read_text())


def images_command(args) -> None:
    from analysis.image_tables import TABLE_FILE, write_image_tables

    frame, out = load_results(args)
    require_columns(frame, ("dataset", "prior", "num_components", "r_entropy"), "images", "tables")
    paths = write_image_tables(frame, out)
    print(f"{len(frame)} trials -> {', '.join(p.name for p in paths)} in {out}")
    if (Path(out) / TABLE_FILE).exists():
        print((Path(out) / TABLE_FILE).read_text())


def report_command(args) -> None:
    from analysis.load import read_sweep_record
    from analysis.report import write_report

    if not (args.results / "sweep.json").exists():
        raise ResultsError(f"no sweep record (sweep.json) in {args.results}: not a sweep's results directory")
    path = write_report(args.results)
    print(f"report: {path}")
    record = read_sweep_record(args.results)
    uri = args.mlflow_uri or record.get("mlflow_uri")
    if uri and record.get("parent_run_id"):
        from mlflow.tracking import MlflowClient

        try:
            MlflowClient(tracking_uri=uri).log_artifact(record["parent_run_id"], str(path))
            print(f"logged to the parent run {record['parent_run_id']} at {redact(uri)}")
        except Exception as error:
            print(f"warning: report not logged to MLflow at {redact(uri)}: {redact(str(error).splitlines()[0][:200])}",
                  file=sys.stderr)


def sync_command(args) -> None:
    from mlflow.exceptions import MlflowException

    from tracking.journal import JournalError
    from tracking.run_layout import tracking_problem
    from tracking.sync import sync_sweep

    problem = tracking_problem(args.mlflow_uri)
    if problem:
        raise ResultsError(problem)
    print(f"syncing {args.results} into {redact(args.mlflow_uri)}")
    try:
        counts = sync_sweep(args.results, args.mlflow_uri)
    except JournalError as error:
        raise ResultsError(str(error)) from None
    except MlflowException as error:  # unreachable server, refused database: one line, not a traceback
        raise ResultsError(f"MLflow at {redact(args.mlflow_uri)}: {redact(str(error).splitlines()[0][:300])}") from None
    print(f"added: {counts}" if counts.total else "MLflow already held everything; nothing added")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {"heatmaps": heatmaps_command, "tables": tables_command, "images": images_command,
                "report": report_command,
                "sync": sync_command}
    try:
        commands[args.command](args)
    except ResultsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
