"""The job store comes up however it is started: processes opening a fresh store at the same
moment all succeed (one creates it under the migration lock, the others wait), and a table an
earlier version created gains the columns and indexes this one declares (Alembic's revisions,
services/migrations), its rows read as before."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from services import db
from services.store import JobStore
from tests.utils.postgres import fresh_database, sqlite_and_postgres
from tests.utils.together import at_once

PROCESSES = 4


def _open_store(url: str) -> str:
    store = JobStore(url)
    record, _ = store.create(spec={}, spec_hash="h", name="n", project="p")
    return record.id


def _url(backend: str, tmp_path: Path, name: str) -> str:
    if backend == "postgres":
        return fresh_database(name)
    return f"sqlite:///{tmp_path / 'jobs.db'}"


@pytest.mark.parametrize("backend", sqlite_and_postgres())
def test_processes_opening_a_fresh_store_at_once_all_come_up(backend, tmp_path):
    url = _url(backend, tmp_path, "layerwise_migrate_race")
    outcomes = at_once(_open_store, (url,), PROCESSES)
    assert [kind for kind, _ in outcomes] == ["ok"] * PROCESSES, outcomes
    assert len(JobStore(url).list(limit=100)[0]) == PROCESSES


# The job table as the version before these columns created it.
_OLD_TABLE = """CREATE TABLE jobs (seq INTEGER PRIMARY KEY, id VARCHAR(32) UNIQUE,
job_type VARCHAR(16), name VARCHAR(250), project VARCHAR(250), status VARCHAR(16), spec JSON,
spec_hash VARCHAR(32), priority INTEGER, attempts INTEGER, max_attempts INTEGER,
owner VARCHAR(120), idempotency_key VARCHAR(200), sweep_id VARCHAR(32), param_count BIGINT,
created_at TIMESTAMP, updated_at TIMESTAMP, started_at TIMESTAMP, finished_at TIMESTAMP,
progress JSON, error TEXT, result JSON, diagnosis JSON, mlflow_run_id VARCHAR(64),
mlflow_experiment_id VARCHAR(64))"""


@pytest.mark.parametrize("backend", sqlite_and_postgres())
def test_an_older_table_gains_the_new_columns(backend, tmp_path):
    url = _url(backend, tmp_path, "layerwise_migrate_columns")
    old = create_engine(url)
    with old.begin() as connection:
        connection.execute(text(_OLD_TABLE.replace("INTEGER PRIMARY KEY", "SERIAL PRIMARY KEY")
                                if backend == "postgres" else _OLD_TABLE))
        connection.execute(text(
            "INSERT INTO jobs (id, job_type, name, project, status, spec, spec_hash, priority, "
            "attempts, max_attempts, owner, created_at) VALUES ('old1', 'experiment', 'n', "
            "'p', 'succeeded', '{}', 'h', 0, 1, 3, 'alice', CURRENT_TIMESTAMP)"))
    old.dispose()
    store = JobStore(url)
    before = store.get("old1")
    assert (before.repair_of, before.attempt_log, before.owner) == (None, [], "alice")
    record, _ = store.create(spec={}, spec_hash="h", name="n", project="p", repair_of="old1",
                             repair_candidate=2, parent_run_id="run")
    again = JobStore(url).get(record.id)  # a second open finds nothing left to add
    assert (again.repair_of, again.repair_candidate, again.parent_run_id) == ("old1", 2, "run")


def _schema_drift(url: str) -> list[tuple[str, str]]:
    """What Alembic finds between the store's table and the model: columns and indexes added
    or missing, as (operation, name)."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            diffs = compare_metadata(MigrationContext.configure(connection), db.Base.metadata)
    finally:
        engine.dispose()
    found = []
    for diff in diffs:
        operation = diff[0]
        if operation in ("add_column", "remove_column"):
            found.append((operation, diff[3].name))
        elif operation in ("add_index", "remove_index"):
            found.append((operation, diff[1].name))
    return found


def _revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(
                connection, opts={"version_table": db.VERSION_TABLE}).get_current_revision()
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", sqlite_and_postgres())
def test_an_older_table_is_upgraded_to_what_the_model_declares(backend, tmp_path):
    """The revisions bring a table made before Alembic (no version table) to the model's
    columns and indexes, and record the newest revision; a fresh store is stamped at it."""
    url = _url(backend, tmp_path, "layerwise_migrate_drift")
    old = create_engine(url)
    with old.begin() as connection:
        connection.execute(text(_OLD_TABLE.replace("INTEGER PRIMARY KEY", "SERIAL PRIMARY KEY")
                                if backend == "postgres" else _OLD_TABLE))
        connection.execute(text("CREATE INDEX ix_jobs_claim ON jobs (status, priority, seq)"))
    old.dispose()
    assert ("add_column", "repair_of") in _schema_drift(url)
    assert ("add_index", "ix_jobs_queue_order") in _schema_drift(url)

    JobStore(url).engine.dispose()
    assert _schema_drift(url) == []
    head = ScriptDirectory(str(db.MIGRATIONS)).get_current_head()
    assert head is not None and _revision(url) == head


@pytest.mark.parametrize("backend", sqlite_and_postgres())
def test_a_fresh_store_is_created_at_the_newest_revision(backend, tmp_path):
    url = _url(backend, tmp_path, "layerwise_migrate_fresh")
    JobStore(url).engine.dispose()
    assert _schema_drift(url) == []
    assert _revision(url) == ScriptDirectory(str(db.MIGRATIONS)).get_current_head()
