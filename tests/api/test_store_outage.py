"""The API when PostgreSQL drops its connections: a clear 503, then the resend is stored once."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from tests.utils.postgres import POSTGRES_URL, empty_job_store, needs_postgres
from tests.utils.server import ServerThread
from tests.utils.settings import local_settings
from tests.utils.specs import mlp_spec

pytestmark = [pytest.mark.postgres, needs_postgres]


def _drop_the_services_connections() -> int:
    """Terminate every other session on the database, as a server restart would."""
    engine = create_engine(POSTGRES_URL)
    with engine.connect() as connection:
        ended = connection.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar_one()
        connection.commit()
    engine.dispose()
    return ended


def test_a_dropped_connection_answers_503_and_the_resend_is_stored_once(tmp_path):
    settings = local_settings(tmp_path, database_url=empty_job_store())
    spec = mlp_spec(name="outage")
    with ServerThread(settings, dispatcher=False) as server:
        http = server.http()
        assert http.post("/v1/experiments", json=spec).status_code == 201  # pool warm
        assert _drop_the_services_connections() >= 1
        refused = http.post("/v1/experiments", json=spec, headers={"Idempotency-Key": "k"})
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "1"
        assert "Idempotency-Key" in refused.json()["detail"]
        first = http.post("/v1/experiments", json=spec, headers={"Idempotency-Key": "k"})
        again = http.post("/v1/experiments", json=spec, headers={"Idempotency-Key": "k"})
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json()["id"] == again.json()["id"]
        listed = http.get("/v1/experiments", params={"limit": 10}).json()
        assert len(listed["data"]) == 2  # the warm-up and the one resent twice
