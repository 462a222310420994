"""The API when PostgreSQL drops its connections: a clear 503, then the resend is stored once."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from services.db import Base
from services.settings import Settings
from tests.conftest import POSTGRES_URL
from tests.utils.server import ServerThread
from tests.utils.specs import mlp_spec

pytestmark = [pytest.mark.postgres,
              pytest.mark.skipif(POSTGRES_URL is None, reason="LAYERWISE_TEST_POSTGRES_URL "
                                                              "is not set (.ci/run sets it)")]


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
    engine = create_engine(POSTGRES_URL)
    Base.metadata.drop_all(engine)  # an empty job store
    engine.dispose()
    settings = Settings(home=tmp_path / "home", data_roots=str(tmp_path), database_url=POSTGRES_URL,
                        mlflow_tracking_uri=None, ray_address=None, api_tokens=None,
                        admin_tokens=None)
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
