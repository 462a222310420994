"""Preparing the MLflow tracking store: created once by the service, tuned in every process."""

from __future__ import annotations

from typing import Any

from mlflow.tracking import MlflowClient
from sqlalchemy import event

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
    starting together do not race to create its tables."""
    tracking_client(tracking_uri).search_experiments(max_results=1)
