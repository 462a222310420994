"""Bearer tokens, owners, caps, request size, and why a queued job waits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils.server import ServerThread
from tests.utils.settings import local_settings
from tests.utils.specs import mlp_spec

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def guarded(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[ServerThread]:
    home: Path = tmp_path_factory.mktemp("guarded")
    settings = local_settings(home, api_tokens="alice:tok-alice,bob:tok-bob",
                              admin_tokens="root:tok-root", max_epochs=50,
                              max_queued_per_owner=3, max_request_bytes=20_000)
    with ServerThread(settings) as server:
        server.dispatcher.paused = True  # jobs stay queued: this module tests the edge only
        yield server


def test_v1_routes_want_a_known_bearer_token(guarded):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic tok-alice"}):
        response = guarded.http().get("/v1/experiments", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["content-type"].startswith("application/problem+json")
    assert guarded.http().get("/healthz").status_code == 200
    assert guarded.http("tok-alice").get("/v1/catalog").status_code == 200


def test_a_token_sees_and_cancels_only_its_own_jobs(guarded):
    alice, bob, root = guarded.http("tok-alice"), guarded.http("tok-bob"), guarded.http("tok-root")
    job = alice.post("/v1/experiments", json=mlp_spec()).json()
    assert job["owner"] == "alice"
    assert bob.get(f"/v1/experiments/{job['id']}").status_code == 404
    assert bob.post(f"/v1/experiments/{job['id']}/cancel").status_code == 404
    assert job["id"] not in [j["id"] for j in bob.get("/v1/experiments").json()["data"]]
    assert job["id"] in [j["id"] for j in root.get("/v1/experiments").json()["data"]]
    assert root.get(f"/v1/experiments/{job['id']}").status_code == 200
    assert alice.post(f"/v1/experiments/{job['id']}/cancel").json()["status"] == "cancelled"


def test_caps_name_the_cap(guarded):
    alice = guarded.http("tok-alice")
    too_long = alice.post("/v1/experiments", json=mlp_spec(training={"epochs": 51}))
    assert too_long.status_code == 422
    assert too_long.json()["errors"][0]["loc"] == ["training", "epochs"]
    assert "LAYERWISE_MAX_EPOCHS" in too_long.json()["detail"]
    bob = guarded.http("tok-bob")
    for _ in range(3):
        assert bob.post("/v1/experiments", json=mlp_spec()).status_code == 201
    full = bob.post("/v1/experiments", json=mlp_spec())
    assert full.status_code == 429 and "LAYERWISE_MAX_QUEUED_PER_OWNER" in full.json()["detail"]
    assert full.headers["retry-after"] == "10"
    big = alice.post("/v1/experiments", json=mlp_spec(tags={"x": "y" * 30_000}))
    assert big.status_code == 413 and "LAYERWISE_MAX_REQUEST_BYTES" in big.json()["detail"]


def test_a_queued_job_says_why_it_waits(guarded):
    root = guarded.http("tok-root")
    job = root.post("/v1/experiments", json=mlp_spec(resources={"cpus": 2})).json()
    waiting = root.get(f"/v1/experiments/{job['id']}").json()["waiting"]
    assert "needs 2 CPU and 0 GPU" in waiting and "free now" in waiting
    assert "queued job(s) ahead" in waiting and "paused" in waiting
