"""The client without a server: answers become the routes' response models, no answer becomes
ServiceUnreachable; id prefixes page the list."""

from __future__ import annotations

import json
import random
import socket
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from api.client import LayerwiseClient, ServiceUnreachable
from api.schemas import ExperimentRecord
from services.records import JobRecord
from tests.utils.server import free_port


def test_refused_and_timed_out_connections_raise_service_unreachable():
    url = f"http://127.0.0.1:{free_port()}"
    with LayerwiseClient(url) as client, pytest.raises(ServiceUnreachable) as refused:
        client.get("abc")
    assert str(refused.value) == f"cannot reach the Layerwise service at {url}: connection refused"
    assert not refused.value.timed_out
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        with LayerwiseClient(f"http://127.0.0.1:{port}", timeout=0.3) as client, \
                pytest.raises(ServiceUnreachable) as late:
            client.list()
    assert late.value.timed_out and "timed out answering (after 0.3 s)" in str(late.value)


def _paged_client(ids: list[str], calls: list[dict[str, Any]]) -> LayerwiseClient:
    """A client whose GET /v1/experiments pages through `ids`, newest first."""

    def answer(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        calls.append(params)
        start, limit = int(params.get("cursor", 0)), int(params["limit"])
        page = ids[start:start + limit]
        more = start + limit < len(ids)
        return httpx.Response(200, json={"data": [{"id": i} for i in page], "count": len(page),
                                         "next_cursor": str(start + limit) if more else None})

    client = LayerwiseClient("http://layerwise.test")
    client._http = httpx.Client(base_url=client.url, transport=httpx.MockTransport(answer))
    return client


def test_match_ids_pages_until_the_end_or_the_bound():
    ids = [f"{random.Random(n).getrandbits(128):032x}" for n in range(1200)]
    calls: list[dict[str, Any]] = []
    client = _paged_client(ids, calls)
    assert client.match_ids(ids[1100][:10]) == [ids[1100]]
    assert [int(c["limit"]) for c in calls] == [500, 500, 500]  # 500 + 500 + the last 200
    assert client.match_ids(ids[5]) == [ids[5]]  # a whole id is itself
    calls.clear()
    assert client.match_ids(ids[900][:10], scan=700) == []  # not among the newest 700
    assert [int(c["limit"]) for c in calls] == [500, 200]
    several = client.match_ids(ids[3][0])  # one hex digit: about 75 of them
    assert len(several) == 10 and all(i.startswith(ids[3][0]) for i in several)


# A job record as the service sends it (`GET /v1/experiments/{id}`), with an attempt that
# ended early and a repair's before and after.
RECORD = {
    "id": "a" * 32, "job_type": "experiment", "name": "net", "project": "default",
    "status": "succeeded", "spec": {"model": {"kind": "mlp"}}, "spec_hash": "h",
    "priority": 0, "attempts": 2, "max_attempts": 3, "owner": "alice", "sweep_id": None,
    "param_count": 42, "created_at": "2026-12-07T19:24:14.5+00:00", "started_at": None,
    "finished_at": None, "progress": {"epoch": 2, "epochs": 2, "step": 9,
                                      "metrics": {"train/loss": 0.5}},
    "error": None, "result": {"val/loss": 0.25}, "diagnosis": {"verdict": "healthy"},
    "mlflow_run_id": "r", "mlflow_experiment_id": "1",
    "attempt_log": [{"attempt": 1, "cause": "worker_lost", "detail": "gone",
                     "at": "2026-12-07T19:25:00Z", "counted": True}],
    "repair_of": "b" * 32, "repair": {"of": "b" * 32, "metric": "val/loss", "better": "lower",
                                      "before": 0.5, "after": 0.25, "helped": True},
}


def test_answers_are_the_routes_response_models_and_requests_are_plain_json():
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.url.path == "/v1/experiments":
            return httpx.Response(201, json={k: v for k, v in RECORD.items() if k != "repair"})
        return httpx.Response(200, json=RECORD)

    client = LayerwiseClient("http://layerwise.test")
    client._http = httpx.Client(base_url=client.url, transport=httpx.MockTransport(answer))
    spec = {"model": {"kind": "mlp"}, "training": {"epochs": 2}}
    submitted = client.submit(spec, idempotency_key="k")
    assert isinstance(submitted, JobRecord) and submitted.param_count == 42
    assert json.loads(sent[0].content) == spec and sent[0].headers["Idempotency-Key"] == "k"

    record = client.get(submitted.id)
    assert isinstance(record, ExperimentRecord)
    assert record.created_at.year == 2026 and record.progress.metrics == {"train/loss": 0.5}
    assert record.attempt_log[0].cause == "worker_lost" and record.attempt_log[0].counted
    assert record.repair is not None and record.repair.helped is True
    # Read back as the service wrote it: the JSON it answered, field for field.
    assert record.model_dump(mode="json", include=set(RECORD))["attempt_log"] == \
        [{**RECORD["attempt_log"][0], "at": "2026-12-07T19:25:00Z"}]


def test_an_answer_that_is_not_the_model_is_refused():
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"id": "x"})  # no status, no spec, ...

    client = LayerwiseClient("http://layerwise.test")
    client._http = httpx.Client(base_url=client.url, transport=httpx.MockTransport(answer))
    with pytest.raises(ValidationError):
        client.get("x")


def test_a_diverged_epochs_null_metric_is_read_not_refused():
    """A loss that was not finite is null in the service's JSON: the typed record keeps it."""
    diverged = {**RECORD, "status": "failed",
                "progress": {**RECORD["progress"], "metrics": {"val/loss": None,
                                                                "train/loss": 0.5}}}

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=diverged)

    client = LayerwiseClient("http://layerwise.test")
    client._http = httpx.Client(base_url=client.url, transport=httpx.MockTransport(answer))
    assert client.get("x").progress.metrics == {"val/loss": None, "train/loss": 0.5}
