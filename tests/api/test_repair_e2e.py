"""End to end: `POST /v1/experiments/{id}/repair` and `layerwise repair` on finished runs, and
`diagnostics.auto_repair` through the real dispatcher (HTTP, Ray, MLflow on SQLite).

The repair by request starts from the verdict engine's own diagnosis of a deep sigmoid net.
The auto repair chain's diagnoses are set through the store (the record the dispatcher's hook
reads) instead: that each round gets a fix that changes the spec is what makes the count of
rounds, not the engine's judgement, end the chain."""

from __future__ import annotations

from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from api.cli import app as cli
from services.records import JobRecord
from tests.utils.specs import mlp_spec
from tests.utils.waiting import wait_until
from workers.submission.repair_outcome import helped

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Gradients vanish through six sigmoid layers (tests/api/test_diagnostics_e2e.py).
VANISHING = {"name": "net", "optimizer": {"name": "sgd", "lr": 0.1}, "training": {"epochs": 1},
             "model": {"hidden": [32] * 6, "activation": "sigmoid"},
             "diagnostics": {"plots": False}}


def with_fix(fix: dict[str, Any]) -> dict[str, Any]:
    return {"verdict": "not_learning", "detected_at_step": 5, "baseline": {},
            "findings": [{"verdict": "not_learning", "evidence": {}, "layers": [],
                          "fix": fix}]}


def test_a_repair_is_a_linked_run_with_the_fix_and_before_and_after(server):
    client, http = server.client(), server.http()
    first = client.submit(mlp_spec(**VANISHING))
    early = http.post(f"/v1/experiments/{first.id}/repair")
    assert early.status_code == 409, early.text
    assert early.headers["content-type"].startswith("application/problem+json")
    assert f"job {first.id} is " in early.json()["detail"]
    assert http.post("/v1/experiments/" + "0" * 32 + "/repair").status_code == 404
    first = client.wait(first.id, timeout=180)
    assert first.status == "succeeded", first.error
    primary = first.diagnosis["findings"][0]
    assert primary["verdict"] == first.diagnosis["verdict"] != "healthy" and primary["fix"]

    shown = CliRunner().invoke(cli, ["repair", first.id[:10], "--wait", "--url", server.url])
    assert shown.exit_code == 0, shown.output
    said = " ".join(shown.output.split())  # the console wraps long lines
    assert f"a repair of {first.id}" in said
    assert "val/accuracy (higher is better): before" in said
    fixed = client.list(limit=5).data[0]
    assert fixed.name == "net (repair 1)"
    record = client.get(fixed.id)
    assert record.status == "succeeded", record.error
    assert record.repair_of == first.id
    before, after = first.result["val/accuracy"], record.result["val/accuracy"]
    assert record.repair is not None
    assert record.repair.model_dump() == {
        "of": first.id, "metric": "val/accuracy", "better": "higher", "before": before,
        "after": after, "helped": helped(
            after, "higher", baseline=record.diagnosis["baseline"]["accuracy"], before=before,
            after_verdict=record.diagnosis["verdict"])}
    run = MlflowClient(tracking_uri=server.settings.tracking_uri).get_run(
        record.mlflow_run_id)
    assert run.data.tags["layerwise.repair_of"] == first.id
    assert run.data.tags["mlflow.parentRunId"] == first.mlflow_run_id
    for path, value in primary["fix"].items():  # the fix is what the repair ran with
        assert run.data.params[path] == str(value), path
    assert run.data.params["model.hidden"] == str([32] * 6)  # and the rest is the first's

    assert record.repair_candidate == 0 and record.parent_run_id == first.mlflow_run_id
    # Asking again: a repair that helped is the answer (200); one that did not makes way for
    # the next candidate (201), which is then the answer, with or without a key (200).
    # (tests/api/test_repair_semantics_e2e.py sets both outcomes through the store.)
    answer = record.id
    if not record.repair.helped:
        nxt = http.post(f"/v1/experiments/{first.id}/repair")
        assert nxt.status_code == 201, nxt.text
        assert nxt.json()["repair_candidate"] == 1 and nxt.json()["repair_of"] == first.id
        answer = nxt.json()["id"]
    for headers in ({}, {"Idempotency-Key": "r1"}):
        again = http.post(f"/v1/experiments/{first.id}/repair", headers=headers)
        assert again.status_code == 200 and again.json()["id"] == answer, again.text


def test_auto_repair_resubmits_on_its_own_and_stops_after_n_rounds(server):
    """Each finished run of the chain is given a fix that halves its rate; with one round
    (the rounds counting down are the unit tests'), the repair is not repaired again."""
    store, auto = server.app.state.store, server.dispatcher.on_finished
    heard: list[str] = []

    def diagnosed(record: JobRecord) -> None:
        if record.name and record.name.startswith("chain"):
            lr = record.spec["optimizer"]["lr"]
            record = store.update(record.id, diagnosis=with_fix({"optimizer.lr": lr / 2}))
        auto(record)
        heard.append(record.id)

    server.dispatcher.on_finished = diagnosed
    try:
        first = server.client().submit(mlp_spec(name="chain", diagnostics={
            "auto_repair": 1, "plots": False}, training={"epochs": 1}))
        chain = wait_until(lambda: _chain(server, first.id), 300,
                           "the run and its repair to succeed")
    finally:
        server.dispatcher.on_finished = auto
    wait_until(lambda: chain[-1].id in heard, 30, "the last run's outcome to be heard")
    auto._pool.submit(lambda: None).result(timeout=60)  # what it submitted is done
    listed = server.client().list(limit=50).data
    assert not [j for j in listed if j.repair_of == chain[1].id]  # no second round,
    # though its diagnosis has a fix too
    assert [job.spec["diagnostics"]["auto_repair"] for job in chain] == [1, 0]
    assert [job.spec["optimizer"]["lr"] for job in chain] == [0.003, 0.0015]
    assert chain[1].parent_run_id == chain[0].mlflow_run_id
    assert "mlflow.parentRunId" not in chain[1].spec["tags"]
    run = MlflowClient(tracking_uri=server.settings.tracking_uri).get_run(
        chain[1].mlflow_run_id)
    assert run.data.tags["layerwise.repair_of"] == first.id
    assert run.data.tags["layerwise.repair_candidate"] == "0"
    assert run.data.tags["mlflow.parentRunId"] == chain[0].mlflow_run_id


def _chain(server: Any, first_id: str, length: int = 2) -> list[JobRecord] | None:
    """The job and its repairs in order, once `length` of them have succeeded."""
    jobs = [server.client().get(first_id)]
    listed = server.client().list(limit=50).data
    while len(jobs) < length:
        after = [j for j in listed if j.repair_of == jobs[-1].id]
        if not after:
            return None
        jobs.append(after[0])
    assert all(job.status in ("queued", "running", "succeeded") for job in jobs), jobs
    return jobs if all(job.status == "succeeded" for job in jobs) else None
