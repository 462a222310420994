"""Preparing the MLflow tracking store: created once by the service, tuned in every process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mlflow.tracking import MlflowClient
from sqlalchemy import create_engine, event
from sqlalchemy.pool import NullPool

from services.db import migration_lock
from services.mlflow_internals import sql_engine

_tuned: set[int] = set()


def tracking_client(tracking_uri: str) -> MlflowClient:
    """An MlflowClient whose SQLite store commits in WAL mode with synchronous=NORMAL.

    MLflow leaves SQLite in its default rollback journal with a full sync per commit: tens of
    milliseconds per call (BENCHMARKS.md), and readers (the API) block writers (the workers).
    WAL lets them run side by side and makes a commit cost a write, not a sync.
    """
    client = MlflowClient(tracking_uri=tracking_uri)
    engine = sql_engine(client) if tracking_uri.startswith("sqlite") else None
    if engine is not None and id(engine) not in _tuned:
        _tuned.add(id(engine))
        event.listen(engine, "connect", _sqlite_pragmas)
        engine.dispose()  # connections opened before the listener reopen with it
    return client


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def prepare_tracking_store(tracking_uri: str) -> None:
    """Create (and migrate) a local MLflow database once, in the service, so that workers
    starting together do not race to create its tables. Replicas and a dispatcher started
    together on a fresh store would still race in here (MLflow's schema creation is not safe
    across processes: "CREATE TABLE latest_metrics", "Online migration expected to match one
    row"), so one process at a time does it (`creation_lock`)."""
    with creation_lock(tracking_uri):
        tracking_client(tracking_uri).search_experiments(max_results=1)


# The PostgreSQL advisory lock key MLflow's schema creation is held under: any fixed number
# other than the job store's (services.db), so that neither waits for the other.
_TRACKING_LOCK_KEY = 0x1A7E_F10E


@contextmanager
def creation_lock(tracking_uri: str) -> Iterator[None]:
    """Held while the tracking store is created or migrated (`services.db.migration_lock` on
    the store's own database, under a key of its own); a tracking server (http, https) or a
    file store: nothing, the server creates its own."""
    if not tracking_uri.startswith(("sqlite", "postgresql")):
        yield
        return
    # The URI as MLflow's store opens it (SQLAlchemy's), on a connection of its own.
    engine = create_engine(tracking_uri, poolclass=NullPool)
    try:
        with migration_lock(engine, key=_TRACKING_LOCK_KEY):
            yield
    finally:
        engine.dispose()

