"""Processes that start together on a fresh MLflow store each create it safely: MLflow's own
schema creation races across processes, so `prepare_tracking_store` takes one at a time."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.utils.postgres import fresh_database, needs_postgres
from tests.utils.together import at_once

PROCESSES = 3


def _start_together(tracking_uri: str) -> list[str]:
    """The errors of PROCESSES processes preparing the store at once (none when all did)."""
    from services.tracking_store import prepare_tracking_store

    return [said for kind, said in at_once(prepare_tracking_store, (tracking_uri,), PROCESSES)
            if kind == "error"]


def _usable(tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri=tracking_uri)
    run = client.create_run(client.create_experiment("after"))
    client.log_metric(run.info.run_id, "m", 1.0, step=0)
    assert client.get_run(run.info.run_id).data.metrics == {"m": 1.0}


def test_processes_creating_a_fresh_sqlite_store_at_once_all_succeed(tmp_path: Path):
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert _start_together(tracking_uri) == []
    _usable(tracking_uri)
    assert (tmp_path / "mlflow.db.migrate.lock").exists()  # beside the database


@needs_postgres
@pytest.mark.postgres
def test_processes_creating_a_fresh_postgres_store_at_once_all_succeed():
    from sqlalchemy import create_engine, text

    from tests.utils.postgres import POSTGRES_URL

    name = f"mlflow_{uuid.uuid4().hex[:8]}"
    tracking_uri = fresh_database(name)
    try:
        assert _start_together(tracking_uri) == []
        _usable(tracking_uri)
    finally:
        admin = create_engine(str(POSTGRES_URL), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
