"""What the MLflow writer's forkserver imports once per driver, so that each sweep's writer starts warm.

A writer forked without these spent ~0.8 s of CPU before its first write (measured on a SQLite URI): ~0.7 s
importing MLflow's database store (SQLAlchemy, the ORM models) on the first client call, ~0.1 s configuring the ORM
mappers on the first query. On a sweep of short trials that was a third of all the tracking's CPU, taken from the
trials on the same cores. Imported here, it is paid once, in the forkserver, while the driver starts Ray.
Both stores are loaded, as the writer's URI is known only when it starts: the database store (sqlite://,
postgresql://) and the REST store (http:// server).
"""
import mlflow.store.tracking.rest_store  # noqa: F401 (imported for its side effect: loaded once)
import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
from sqlalchemy.orm import configure_mappers

import analysis.trial_figures  # noqa: F401 (matplotlib, for the per-cell figures the writer draws)
import sweeps.writer_engine  # noqa: F401

configure_mappers()
