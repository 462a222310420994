"""/readyz checks what this replica serves with: a `--no-dispatcher` replica is ready without
Ray; a replica whose dispatcher's ticks keep failing is not, and says why."""

from __future__ import annotations

import httpx
import pytest

import workers.runtime.dispatcher as dispatcher_module
from services.db import Base
from tests.utils.server import ServerThread
from tests.utils.waiting import wait_until

pytestmark = [pytest.mark.e2e]


def _readiness(http: httpx.Client, status: int, timeout: float = 30) -> dict:
    """/readyz's body once it answers `status` (a probe polls it the same way)."""
    answers: list[httpx.Response] = []

    def answered() -> bool:
        answers.append(http.get("/readyz"))
        return answers[-1].status_code == status

    wait_until(answered, timeout, lambda: f"/readyz to answer {status}, not "
                                          f"{answers[-1].status_code}: {answers[-1].text}")
    return answers[-1].json()


def test_a_replica_without_a_dispatcher_is_ready_when_its_store_and_mlflow_are(settings):
    with ServerThread(settings, dispatcher=False) as server:
        ready = server.http().get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"store": "ok", "mlflow": "ok"}  # Ray is not its own


def test_failing_dispatcher_ticks_make_readyz_503_naming_the_dispatcher(
        ray_cluster, settings, monkeypatch):
    monkeypatch.setattr(dispatcher_module, "UNREADY_AFTER_S", 1.0)
    with ServerThread(settings) as server:
        http = server.http()
        assert _readiness(http, 200)["checks"] == {
            "store": "ok", "mlflow": "ok", "ray": "ok", "dispatcher": "ok"}
        # The database answers, but its job table is gone: every tick of the dispatcher fails.
        engine = server.app.state.store.engine
        Base.metadata.drop_all(engine)
        checks = _readiness(http, 503)["checks"]
        assert checks["store"] == "ok" and checks["ray"] == "ok"
        assert "ticks failed" in checks["dispatcher"]
        assert "no such table" in checks["dispatcher"]
        Base.metadata.create_all(engine)  # repaired: ready again, without a restart
        assert _readiness(http, 200)["checks"]["dispatcher"] == "ok"
