"""The PostgreSQL pool: a connection that died while idle in the pool is replaced, not used."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from services import db
from tests.utils.postgres import POSTGRES_URL, needs_postgres

pytestmark = [pytest.mark.postgres, needs_postgres]


def _pooled_backend_killed(engine) -> int:
    """Check a connection in and out once, then end its server process from outside."""
    with engine.connect() as connection:
        pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with db.create_engine(POSTGRES_URL).connect() as other:
        other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        other.commit()
    return pid


def test_an_idle_connection_the_server_dropped_is_replaced(monkeypatch):
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.0)  # every pooled connection is "idle"
    engine = db.make_engine(POSTGRES_URL)
    killed = _pooled_backend_killed(engine)
    with engine.connect() as connection:
        pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    assert pid != killed
    engine.dispose()


def test_a_busy_pool_does_not_ping(monkeypatch):
    """Below the idle time a connection is used as it is: the dropped one fails its call."""
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 3600.0)
    engine = db.make_engine(POSTGRES_URL)
    _pooled_backend_killed(engine)
    with pytest.raises(OperationalError), engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    with engine.connect() as connection:  # the pool dropped the dead one
        assert connection.execute(text("SELECT 1")).scalar_one() == 1
    engine.dispose()
