"""Processes that start together on a fresh MLflow store each create it safely: MLflow's own
schema creation races across processes, so `prepare_tracking_store` takes one at a time."""

from __future__ import annotations

import multiprocessing
import uuid
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.utils.postgres import fresh_database, needs_postgres

PROCESSES = 3


def _prepare(tracking_uri: str, barrier: object, errors: object) -> None:
    from services.tracking_store import prepare_tracking_store

    barrier.wait()  # type: ignore[attr-defined]
    try:
        prepare_tracking_store(tracking_uri)
    except Exception as exc:  # the parent asserts on what went wrong, not on an exit code
        errors.put(f"{type(exc).__name__}: {exc}")  # type: ignore[attr-defined]
        raise


def _start_together(tracking_uri: str) -> list[str]:
    context = multiprocessing.get_context("spawn")
    barrier, errors = context.Barrier(PROCESSES), context.Queue()
    processes = [context.Process(target=_prepare, args=(tracking_uri, barrier, errors))
                 for _ in range(PROCESSES)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert [p.exitcode for p in processes] == [0] * PROCESSES, found
    return found


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
