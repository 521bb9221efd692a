"""`report.html`: one self-contained page per sweep (figures embedded, tables, settings, links to MLflow runs).

Written into the sweep's results directory at the end of every sweep and by `python -m analysis report`; it opens
from disk or as an artifact of the parent run, with no server and no network.
"""
import base64
import html
import time
from pathlib import Path

import pandas as pd

from analysis.load import BOOKKEEPING, RESULTS_FILE, load_parquet, read_sweep_record
from tracking.files import write_text
from tracking.run_layout import run_url, ui_base_url

REPORT_FILE = "report.html"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figure img { max-width: 560px; border: 1px solid #ddd; } figcaption { font-size: 0.8em; color: #555; }
.status-diverged, .status-error { color: #b00; } .status-pruned { color: #777; }
code { background: #f6f6f6; padding: 0 0.2em; }
"""


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, border=0, na_rep="—", float_format=lambda v: f"{v:.4g}", escape=True)


def _figure(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(path.name)}</figcaption></figure>")


def _settings(record: dict) -> str:
    rows = [("sweep", record.get("name")), ("study", record.get("study")), ("status", record.get("status")),
            ("command", record.get("command")), ("Ray storage", record.get("storage")),
            ("MLflow tracking URI", record.get("mlflow_uri") or "none (--no-mlflow)")]
    rows += [(key, value) for key, value in sorted(record.get("params", {}).items())]
    body = "".join(f"<tr><td>{html.escape(str(k))}</td><td><code>{html.escape(str(v))}</code></td></tr>"
                   for k, v in rows)
    return f"<table>{body}</table>"


def fallback_columns(frame: pd.DataFrame) -> list[str]:
    """For a sweep whose record names no columns (written before studies declared them): the settings that vary
    between its cells (its axes), status, step and every eval/* metric."""
    varying = [c for c in frame if "/" not in c and c not in BOOKKEEPING and frame[c].astype(str).nunique() > 1]
    return [*varying, "status", "step", *(c for c in frame if c.startswith("eval/"))]


def _trials(frame: pd.DataFrame, record: dict) -> str:
    columns = [c for c in record.get("report_columns") or fallback_columns(frame) if c in frame]
    shown = frame[columns].copy()
    uri, experiment = record.get("mlflow_uri"), record.get("experiment_id")
    rows = []
    for (_, row), run_id in zip(shown.iterrows(), frame.get("mlflow_run_id", [""] * len(frame)), strict=True):
        cells = "".join(f'<td class="status-{html.escape(str(v))}">{html.escape(str(v))}</td>' if c == "status"
                        else f"<td>{v:.4g}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>"
                        for c, v in row.items())
        link = (f'<td><a href="{html.escape(run_url(ui_base_url(uri), experiment, run_id))}">run</a></td>'
                if uri and experiment and isinstance(run_id, str) and run_id else "<td>—</td>")
        rows.append(f"<tr>{cells}{link}</tr>")
    header = "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "<th>MLflow</th>"
    return f"<table><tr>{header}</tr>{''.join(rows)}</table>"


def write_report(results_dir: str | Path) -> Path:
    """Write results_dir/report.html from the sweep's files; returns its path."""
    results_dir = Path(results_dir)
    record = read_sweep_record(results_dir)
    frame = load_parquet(results_dir) if (results_dir / RESULTS_FILE).exists() else pd.DataFrame()
    name = record.get("name", results_dir.name)
    parts = [f"<h1>{html.escape(record.get('study', ''))} sweep <code>{html.escape(name)}</code></h1>",
             f"<p>Written {time.strftime('%Y-%m-%d %H:%M:%S')}; {len(frame)} trials"]
    if len(frame):
        counts = frame["status"].value_counts()
        parts[-1] += " (" + ", ".join(f"{n} {html.escape(str(s))}" for s, n in counts.items()) + ")"
    parts[-1] += ".</p>"
    if record.get("mlflow_uri") and record.get("parent_run_id") and record.get("experiment_id"):
        url = run_url(ui_base_url(record["mlflow_uri"]), record["experiment_id"], record["parent_run_id"])
        hint = "" if record["mlflow_uri"].startswith("http") else \
            f" (start <code>mlflow ui --backend-store-uri {html.escape(record['mlflow_uri'])}</code> first)"
        parts.append(f'<p>MLflow parent run: <a href="{html.escape(url)}">{html.escape(url)}</a>{hint}</p>')
    for table_file in sorted(results_dir.glob("*.csv")):
        parts.append(f"<h2>{html.escape(table_file.stem.replace('_', ' '))}</h2>{_table(pd.read_csv(table_file))}")
    figures = sorted(results_dir.glob("*.png"))
    if figures:
        parts.append("<h2>Figures</h2>" + "".join(_figure(p) for p in figures))
    if len(frame):
        parts.append("<h2>Trials</h2><p>Each trial's figure is in <code>trials/</code> and on its MLflow run.</p>"
                     + _trials(frame, record))
    parts.append("<h2>Settings</h2>" + _settings(record))
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(name)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    path = results_dir / REPORT_FILE
    write_text(path, page)
    return path
