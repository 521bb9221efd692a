"""What the MLflow writer's forkserver imports once per driver, so that each sweep's writer starts warm.

A writer forked without these spent ~0.8 s of CPU before its first write (measured on a SQLite URI): ~0.7 s
importing MLflow's database store (SQLAlchemy, the ORM models) on the first client call, ~0.1 s configuring the ORM
mappers on the first query. On a sweep of short trials that was a third of all the tracking's CPU, taken from the
trials on the same cores. Imported here, it is paid once, in the forkserver, while the driver starts Ray.
Both stores are loaded, as the writer's URI is known only when it starts: the database store (sqlite://,
postgresql://) and the REST store (http:// server). What the writer draws (the sweeps' per-cell figures, with
matplotlib) its caller names with `tracking.writer.preload_in_writers`: tracking imports none of sweeps/analysis.
"""
import importlib.util
import sys

import mlflow.store.tracking.rest_store  # noqa: F401 (imported for its side effect: loaded once)
import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
from sqlalchemy.orm import configure_mappers

import tracking.writer_engine  # noqa: F401

# Before every request to a tracking server, MLflow's client asks whether it runs inside Databricks or Spark by
# importing these (~6 tries per request). Where one is not installed, each try searches all of sys.path again,
# since Python does not remember a failed import: 2-4 ms of CPU per trial's three requests, a fifth to a quarter
# of the writer's client work (benchmarks/tracking_call_cost.py). A None entry makes the same import fail at once.
PLATFORM_PROBES = ("dbruntime", "IPython", "pyspark")


def remember_absent_platform_modules(names: tuple[str, ...] = PLATFORM_PROBES) -> list[str]:
    """Mark those of `names` that are not installed as absent; returns them."""
    absent = [name for name in names if name not in sys.modules and importlib.util.find_spec(name) is None]
    for name in absent:
        sys.modules[name] = None  # `import name` (and `from name.x import y`) now raises ModuleNotFoundError at once
    return absent


configure_mappers()
remember_absent_platform_modules()
