"""Trust boundaries through the real HTTP server with two owners' tokens: a spec cannot carry
the tags the service writes (a repair link, MLflow's parent run), no route lets one owner
reach another's job, one request has one Authorization header, and asking for a repair again
returns the repair that exists. The jobs are finished through the store (with a diagnosis and
two fixes): what is tested is who may reach them, not the training."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from services.lifecycle import Status
from tests.utils.raw_http import send_raw
from tests.utils.server import ServerThread, two_owners

ALICE, BOB = "tok-alice-1", "tok-bob-2"
EXAMPLE = Path(__file__).parents[2] / "examples/pathologies/not_learning-mlp-lr-tiny.yaml"
SECRET = "alice-secret-42"
DIAGNOSIS = {"verdict": "not_learning", "detected_at_step": 5, "baseline": {},
             "findings": [{"verdict": "not_learning", "evidence": {}, "layers": [],
                           "fix": {"optimizer.lr": 0.1},
                           "alternatives": [{"optimizer.lr": 0.01}]}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with two_owners(tmp_path_factory.mktemp("trust"), ALICE, BOB) as running:
        yield running


def example(**overrides: Any) -> dict[str, Any]:
    spec = yaml.safe_load(EXAMPLE.read_text())
    spec["training"]["epochs"] = 1
    return {**spec, **overrides}


def finish(server: ServerThread, job_id: str) -> None:
    store = server.app.state.store
    store.move(job_id, Status.RUNNING)
    store.move(job_id, Status.SUCCEEDED, diagnosis=DIAGNOSIS, mlflow_run_id="run-" + job_id[:8],
               result={"val/accuracy": 0.1})


@pytest.fixture(scope="module")
def alices_job(server: ServerThread) -> dict[str, Any]:
    with server.http(ALICE) as alice:
        made = alice.post("/v1/experiments", json=example(
            project="alice-proj", tags={"secret": SECRET}))
    assert made.status_code == 201, made.text
    finish(server, made.json()["id"])
    return made.json()


def test_a_spec_may_not_forge_the_service_tags(server, alices_job):
    with server.http(BOB) as bob:
        for key, value in (("layerwise.repair_of", alices_job["id"]),
                           ("layerwise.repair_candidate", "0"),
                           ("mlflow.parentRunId", "run-x"), ("mlflow.user", "alice")):
            refused = bob.post("/v1/experiments", json=example(tags={key: value}))
            assert refused.status_code == 422, refused.text
            body = refused.json()
            assert body["errors"][0]["loc"] == ["tags", key]
            assert f"tags.{key}: keys under layerwise. and mlflow. are written by the " \
                   "service; rename the tag" in body["detail"]
        sweep = {"base": example(tags={"layerwise.job_id": "x"}),
                 "space": {"optimizer.lr": {"type": "choice", "values": [0.1, 0.01]}}}
        refused = bob.post("/v1/sweeps", json=sweep)
        assert refused.status_code == 422
        assert ["base", "tags", "layerwise.job_id"] in [e["loc"] for e in
                                                        refused.json()["errors"]]
        refused = bob.post("/v1/sweeps", json={**sweep, "base": example(),
                                               "tags": {"mlflow.parentRunId": "r"}})
        assert refused.status_code == 422
        assert [e["loc"] for e in refused.json()["errors"]] == [["tags", "mlflow.parentRunId"]]


def test_the_run_description_stays_the_users(server):
    with server.http(BOB) as bob:
        made = bob.post("/v1/experiments", json=example(
            tags={"mlflow.note.content": "lr sweep, first try", "layerwise_team": "b"}))
    assert made.status_code == 201, made.text
    assert made.json()["spec"]["tags"]["mlflow.note.content"] == "lr sweep, first try"


def test_no_route_lets_bob_reach_alices_job(server, alices_job):
    job_id = alices_job["id"]
    calls = [("GET", f"/v1/experiments/{job_id}"), ("GET", f"/v1/experiments/{job_id}/metrics"),
             ("GET", f"/v1/experiments/{job_id}/metrics?key=val/loss"),
             ("POST", f"/v1/experiments/{job_id}/repair"),
             ("POST", f"/v1/experiments/{job_id}/cancel"),
             ("GET", f"/v1/compare?ids={job_id}"), ("GET", f"/v1/sweeps/{job_id}"),
             ("POST", f"/v1/sweeps/{job_id}/cancel")]
    with server.http(BOB) as bob, server.http(ALICE) as alice:
        for method, path in calls:
            answer = bob.request(method, path)
            assert answer.status_code == 404, (method, path, answer.text)
            assert SECRET not in answer.text and "alice-proj" not in answer.text
        listed = bob.get("/v1/experiments", params={"project": "alice-proj"}).json()
        assert listed["count"] == 0
        # Nothing was done to it, and alice still reaches it.
        record = alice.get(f"/v1/experiments/{job_id}").json()
        assert record["status"] == "succeeded" and record["spec"]["tags"]["secret"] == SECRET
        assert _repairs_of(alice, job_id) == []


def test_two_authorization_headers_are_refused_at_the_edge(server):
    status, body = send_raw(server.url, "GET", "/v1/experiments", [
        f"Authorization: Bearer {BOB}", f"Authorization: Bearer {ALICE}"])
    assert status == 400 and "send one Authorization header" in body
    status, body = send_raw(server.url, "GET", "/healthz", [
        f"Authorization: Bearer {BOB}", "Authorization: Bearer x"])
    assert status == 400, body  # before routing, on every path
    status, _ = send_raw(server.url, "GET", "/v1/experiments", [f"Authorization: Bearer {BOB}"])
    assert status == 200


def test_asking_again_for_a_repair_returns_the_one_that_exists(server, alices_job):
    job_id = alices_job["id"]
    with server.http(ALICE) as alice:
        first = alice.post(f"/v1/experiments/{job_id}/repair")
        assert first.status_code == 201, first.text
        again = alice.post(f"/v1/experiments/{job_id}/repair")
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
        made = first.json()
        assert (made["repair_of"], made["repair_candidate"]) == (job_id, 0)
        assert made["parent_run_id"] == "run-" + job_id[:8]
        assert "layerwise.repair_of" not in made["spec"]["tags"]
        assert made["spec"]["tags"] == {"secret": SECRET} and made["owner"] == "alice"
        # Finished without helping: its repair is the next fix for alice's job, once.
        finish(server, made["id"])
        following = alice.post(f"/v1/experiments/{made['id']}/repair")
        assert following.status_code == 201, following.text
        assert (following.json()["repair_of"], following.json()["repair_candidate"]) == (
            job_id, 1)
        repeat = alice.post(f"/v1/experiments/{made['id']}/repair")
        assert repeat.status_code == 200 and repeat.json()["id"] == following.json()["id"]
        assert len(_repairs_of(alice, job_id)) == 2
    with server.http(BOB) as bob:  # nor through alice's repair
        assert bob.post(f"/v1/experiments/{made['id']}/repair").status_code == 404


def _repairs_of(client: httpx.Client, job_id: str) -> list[str]:
    listed = client.get("/v1/experiments", params={"limit": 500}).json()["data"]
    return [job["id"] for job in listed if job["repair_of"] == job_id]
