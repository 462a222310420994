"""The test PostgreSQL (LAYERWISE_TEST_POSTGRES_URL; .ci/run sets it), and fresh databases on it."""

from __future__ import annotations

import os

import pytest

POSTGRES_URL = os.environ.get("LAYERWISE_TEST_POSTGRES_URL")
needs_postgres = pytest.mark.skipif(
    POSTGRES_URL is None, reason="LAYERWISE_TEST_POSTGRES_URL is not set (.ci/run sets it)")


def fresh_database(name: str) -> str:
    """The URL of an empty database `name` on the test server (dropped first if it exists)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    assert POSTGRES_URL is not None
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


def sqlite_and_postgres() -> list:
    """Parameters for a fixture run on both backends: postgres skipped when it is not set."""
    return ["sqlite", pytest.param("postgres", marks=[needs_postgres, pytest.mark.postgres])]


def empty_job_store() -> str:
    """The test server's URL, its job tables dropped (the first use creates them again)."""
    from sqlalchemy import create_engine

    from services.db import Base

    assert POSTGRES_URL is not None
    engine = create_engine(POSTGRES_URL)
    Base.metadata.drop_all(engine)
    engine.dispose()
    return POSTGRES_URL
