"""How a sweep is laid out in MLflow, shared by the live tracking (sweeps' callback, the writer), `sync` and
analysis's `load`/`report`.

One experiment per study, one parent run per sweep (tag `priorsweep.sweep`), one child run per cell (tags
`mlflow.parentRunId` and `priorsweep.trial_id`, the cell's id). The trial-id tag is what makes writes idempotent:
a cell's run is found by it before one is created, so no cell ever gets two runs. Only namespaced numbers
(`train/…`, `val/…`, `eval/…`) of a result become metrics; params are the cell's flattened config.
"""
import base64
import math
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tracking.secrets import redact, without_user_info

# A dead server must fail a call in seconds, not after MLflow's default 7 retries with exponential backoff (minutes);
# and MLflow's two printed lines per ended run would drown the sweep's own progress lines.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

SWEEP_TAG = "priorsweep.sweep"
TRIAL_ID_TAG = "priorsweep.trial_id"
STATUS_TAG = "priorsweep.status"
PARENT_TAG = "mlflow.parentRunId"
# MlflowClient.log_batch limits per call
MAX_METRICS, MAX_PARAMS, MAX_TAGS, MAX_ENTITIES = 1000, 100, 100, 1000
METRIC_PREFIXES = ("train/", "val/", "eval/")


# MLflow 3's UI opens an experiment in its GenAI view unless the experiment says it trains models
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def experiment_id(client: MlflowClient, name: str) -> str:
    """The experiment's id, created on first use. Two sweeps of a study starting together against one server can
    both find it missing: the one whose create loses (the name is unique in MLflow's database) takes the winner's."""
    found = client.get_experiment_by_name(name)
    if found:
        return found.experiment_id
    try:
        return client.create_experiment(name, tags=EXPERIMENT_KIND)
    except MlflowException:
        found = client.get_experiment_by_name(name)
        if found is None:  # the create failed for another reason
            raise
        return found.experiment_id


def find_parent(client: MlflowClient, experiment: str, sweep: str) -> str | None:
    """The newest parent run of the sweep named `sweep`, or None."""
    runs = client.search_runs([experiment], filter_string=f"tags.`{SWEEP_TAG}` = '{sweep}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


def create_parent(client: MlflowClient, experiment: str, sweep: str, tags: dict[str, str], params: dict) -> str:
    run = client.create_run(experiment, run_name=sweep, tags={**tags, SWEEP_TAG: sweep})
    log_in_batches(client, run.info.run_id, params=[Param(k, v) for k, v in flatten_params(params).items()])
    return run.info.run_id


def child_runs(client: MlflowClient, experiment: str, parent_run_id: str) -> dict[str, str]:
    """cell id -> run id of the parent's children (one search, paged)."""
    found, token = {}, None
    while True:
        page = client.search_runs([experiment], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
                                  max_results=1000, page_token=token)
        for run in page:
            cell = run.data.tags.get(TRIAL_ID_TAG)
            if cell:
                found.setdefault(cell, run.info.run_id)
        token = page.token
        if not token:
            return found


def create_child(client: MlflowClient, experiment: str, parent_run_id: str, cell: str, name: str) -> str:
    run = client.create_run(experiment, run_name=name,
                            tags={PARENT_TAG: parent_run_id, TRIAL_ID_TAG: cell, STATUS_TAG: "running"})
    return run.info.run_id


def log_in_batches(client: MlflowClient, run_id: str, metrics: Sequence[Metric] = (), params: Sequence[Param] = (),
                   tags: Sequence[RunTag] = ()) -> int:
    """As few `log_batch` calls as MLflow's per-call limits allow; returns the number of calls."""
    metrics, params, tags = list(metrics), list(params), list(tags)
    calls = 0
    while metrics or params or tags:
        batch_params, params = params[:MAX_PARAMS], params[MAX_PARAMS:]
        batch_tags, tags = tags[:MAX_TAGS], tags[MAX_TAGS:]
        room = min(MAX_METRICS, MAX_ENTITIES - len(batch_params) - len(batch_tags))
        batch_metrics, metrics = metrics[:room], metrics[room:]
        client.log_batch(run_id, metrics=batch_metrics, params=batch_params, tags=batch_tags)
        calls += 1
    return calls


def flatten_params(config: dict, prefix: str = "") -> dict[str, str]:
    """Nested config -> {'a.b': 'value'}; values as MLflow stores them (strings, at most 6000 characters)."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_params(value, name + "."))
        else:
            flat[name] = str(value)[:6000]
    return flat


def numeric_metrics(result: dict) -> dict[str, float]:
    """The result's namespaced, finite numbers (MLflow metrics); NaN/inf are left out here and in the journal."""
    return {
        key: float(value)
        for key, value in result.items()
        if key.startswith(METRIC_PREFIXES) and isinstance(value, (int, float)) and not isinstance(value, bool)
        and math.isfinite(value)
    }


def run_url(ui_base: str, experiment: str, run_id: str) -> str:
    return f"{ui_base.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}"


def ui_base_url(tracking_uri: str) -> str:
    """Where a browser finds the runs: the server itself, or `mlflow ui`'s default address for a database URI."""
    if tracking_uri.startswith(("http://", "https://")):
        return without_user_info(tracking_uri)
    return "http://127.0.0.1:5000"


def tracking_problem(uri: str, timeout_s: float = 5.0) -> str | None:
    """Why MLflow at `uri` cannot be used right now (one line, its password redacted), or None when it answers."""
    problem = _tracking_problem(uri, timeout_s)
    return redact(problem) if problem else None


def _tracking_problem(uri: str, timeout_s: float) -> str | None:
    try:
        if uri.startswith(("http://", "https://")):
            with urllib.request.urlopen(_health_request(uri), timeout=timeout_s) as response:
                if response.status != 200:
                    return f"MLflow tracking server at {uri} answered HTTP {response.status}"
        elif uri.startswith("sqlite:///"):
            directory = Path(uri.removeprefix("sqlite:///")).expanduser().resolve().parent
            if not directory.is_dir():
                return f"MLflow SQLite file's directory does not exist: {directory}"
        elif uri.startswith(("postgresql", "mysql", "mssql")):
            import sqlalchemy

            sqlalchemy.create_engine(uri, connect_args={"connect_timeout": int(timeout_s)}).connect().close()
    except (urllib.error.URLError, OSError) as error:
        return f"cannot reach MLflow tracking server at {uri}: {getattr(error, 'reason', error)}"
    except ImportError as error:
        return f"tracking URI {uri} needs a database driver that is not installed: {error}"
    except Exception as error:  # sqlalchemy's OperationalError and friends: the database refused us
        return f"cannot open MLflow database {uri}: {str(error).splitlines()[0]}"
    return None


def _health_request(uri: str) -> urllib.request.Request:
    """GET <server>/health; user info in the URI becomes a basic-auth header, as MLflow's own client sends it
    (urllib would take `user:password@host` for the host name)."""
    parts = urllib.parse.urlsplit(uri)
    request = urllib.request.Request(without_user_info(uri).rstrip("/") + "/health")
    if parts.username is not None:
        credentials = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
    return request
