#!/usr/bin/env python
"""The MLflow UI screenshots in docs/img/, taken from a real sweep on a real tracking server.

  .venv/bin/pip install playwright     # the Python driver only; the browser is Debian's: apt-get install chromium
  .venv/bin/python docs/mlflow_screenshots.py [--keep]

Starts PostgreSQL + `mlflow server` on 127.0.0.1 (devtools/tracking_server.py), runs a small bias-grid sweep into it
(3 biases × 3 β, 600 steps), then opens the UI in headless Chromium: the experiment's runs with the sweep's parent
expanded to its children (docs/img/mlflow_ui_sweep.png) and the parent run's artifacts with the decoder-MSE heatmap
(docs/img/mlflow_ui_heatmap.png).
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # devtools (a helper of the repository, not installed)

from mlflow.tracking import MlflowClient  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from devtools.tracking_server import tracking_server  # noqa: E402

IMAGES = ROOT / "docs" / "img"
SWEEP = "ui-demo"


def run_sweep(uri: str, out: Path) -> str:
    subprocess.run([sys.executable, str(ROOT / "sweeps" / "bias_grid.py"), "--preset", "smoke", "--biases", "0",
                    "2.5", "5", "--betas", "0.1", "1", "8", "--steps", "600", "--report-every", "100", "--name",
                    SWEEP, "--out", str(out), "--mlflow-uri", uri], check=True)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("bias_grid").experiment_id
    parent = client.search_runs([experiment], f"tags.`priorsweep.sweep` = '{SWEEP}'")[0]
    return f"{experiment}/runs/{parent.info.run_id}"


def screenshots(uri: str, parent_path: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1900, "height": 760})
        experiment = parent_path.split("/")[0]
        page.goto(f"{uri}/#/experiments/{experiment}/runs")
        page.wait_for_selector(f"text={SWEEP}", timeout=60_000)
        close_assistant(page)
        page.get_by_text("Model training", exact=True).click()  # the sidebar of training runs, not GenAI's
        page.wait_for_timeout(1000)
        show_columns(page, ("eval/decoder_mse", "eval/r2_learned_to_true", "eval/active_dims"))
        page.locator(".ag-row").filter(has_text=SWEEP).locator("button").first.click()  # expand the parent
        page.wait_for_selector("text=bias=5 beta=8 seed=0", timeout=30_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(IMAGES / "mlflow_ui_sweep.png"))
        page.goto(f"{uri}/#/experiments/{parent_path}/artifacts/heatmap_decoder_mse.png")
        page.wait_for_selector("text=heatmap_decoder_mse.png", timeout=60_000)
        close_assistant(page)
        page.wait_for_timeout(3000)
        page.screenshot(path=str(IMAGES / "mlflow_ui_heatmap.png"))
        browser.close()


def show_columns(page, metrics: tuple[str, ...]) -> None:
    page.get_by_role("button", name="Columns").click()
    page.wait_for_timeout(800)
    for metric in metrics:
        page.get_by_text(metric, exact=True).first.click()
        page.wait_for_timeout(300)
    page.keyboard.press("Escape")
    page.wait_for_timeout(500)


def close_assistant(page) -> None:
    """MLflow 3.17 opens an assistant panel beside every page; it would hide a third of the runs table."""
    page.wait_for_timeout(1500)
    close = page.get_by_role("button", name="Close")
    if close.count():
        close.first.click()
        page.wait_for_timeout(500)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args()
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch, tracking_server(Path(scratch) / "server") as server:
        screenshots(server.uri, run_sweep(server.uri, Path(scratch) / "results"))
    print(f"wrote {IMAGES / 'mlflow_ui_sweep.png'} and {IMAGES / 'mlflow_ui_heatmap.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
