"""End to end: the real app over HTTP, a real local Ray, MLflow on SQLite."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from tests.utils.specs import mlp_spec
from tests.utils.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_mlp_runs_on_ray_and_every_layer_has_a_grad_norm_curve(server):
    client = server.client()
    spec = mlp_spec(diagnostics={"every_steps": 3}, data={"test_fraction": 0.1})
    job = client.submit(spec)
    assert job.status == "queued" and job.param_count == 64 * 32 + 32 + 32 * 32 + 32 + 330

    done = client.wait(job.id, timeout=180)

    assert done.status == "succeeded", done.error
    assert done.attempts == 1 and done.started_at and done.finished_at
    assert done.progress.epoch == 2 and done.progress.epochs == 2
    assert set(done.result) >= {"val/loss", "val/accuracy", "test/loss", "test/accuracy"}
    steps = done.progress.step
    mlflow = MlflowClient(tracking_uri=server.settings.tracking_uri)
    run = mlflow.get_run(done.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["layerwise.job_id"] == job.id
    assert run.data.tags["layerwise.model_kind"] == "mlp"
    assert run.data.params["optimizer.lr"] == "0.003"
    layers = ["layers.0", "layers.1", "output"]
    logged_steps = list(range(0, steps, 3))
    for layer in layers:
        for prefix in ("grad_norm", "update_norm", "weight_norm"):
            points = client.metric_history(job.id, f"{prefix}/{layer}")
            assert [p.step for p in points] == logged_steps, (prefix, layer)
            assert all(p.value > 0 for p in points), (prefix, layer)
    assert len(client.metric_history(job.id, "grad_norm/total")) == len(logged_steps)
    artifacts = {a.path for a in mlflow.list_artifacts(done.mlflow_run_id)}
    assert {"spec.yaml", "layers.json"} <= artifacts
    models = mlflow.search_logged_models(experiment_ids=[done.mlflow_experiment_id])
    assert any(m.source_run_id == done.mlflow_run_id for m in models)


def test_refused_specs_get_a_422_naming_the_field_and_nothing_is_queued(server):
    http = server.http()
    before = http.get("/v1/experiments", params={"limit": 500}).json()["count"]
    cases = [
        (mlp_spec(bogus=1), ["bogus"]),
        (mlp_spec(model={"kind": "nope"}), ["model"]),
        (mlp_spec(model={"hidden": [0]}), ["model", "mlp", "hidden", 0]),
        (mlp_spec(optimizer={"lr": -1}), ["optimizer", "lr"]),
        (mlp_spec(data={"name": "no-such-set"}), ["data", "name"]),
        (mlp_spec(data={"params": {"noise": 1}}), ["data", "params", "noise"]),
        (mlp_spec(data={"source": "file", "name": None, "path": "../../etc/passwd"}),
         ["data", "path"]),
        (mlp_spec(resources={"cpus": 64}), ["resources", "cpus"]),
        (mlp_spec(loss="bce"), ["loss"]),
    ]
    for body, loc in cases:
        response = http.post("/v1/experiments", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["status"] == 422 and problem["title"] and problem["detail"]
        assert loc in [e["loc"] for e in problem["errors"]], (loc, problem["errors"])
    malformed = http.post("/v1/experiments", content=b"{not json",
                          headers={"content-type": "application/json"})
    assert malformed.status_code == 422
    assert http.get("/v1/experiments", params={"limit": 500}).json()["count"] == before


def test_a_failing_worker_marks_the_job_failed_and_the_service_keeps_running(server):
    client = server.client()
    diverging = mlp_spec(data={"name": "function", "params": {"fn": "square"}},
                         model={"hidden": [256, 256], "activation": "relu"},
                         optimizer={"name": "sgd", "lr": 10.0}, training={"epochs": 5})
    failed = client.wait(client.submit(diverging).id, timeout=180)
    assert failed.status == "failed"
    assert "diverged at step" in failed.error
    assert MlflowClient(tracking_uri=server.settings.tracking_uri).get_run(
        failed.mlflow_run_id).info.status == "FAILED"
    after = client.wait(client.submit(mlp_spec(training={"epochs": 1})).id, timeout=180)
    assert after.status == "succeeded"


def test_idempotency_key_returns_the_first_record(server):
    http = server.http()
    first = http.post("/v1/experiments", json=mlp_spec(), headers={"Idempotency-Key": "k-1"})
    again = http.post("/v1/experiments", json=mlp_spec(), headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]


def test_cancel_a_running_job_stops_it(server):
    client = server.client()
    job = client.submit(mlp_spec(training={"epochs": 5000}))

    def training() -> bool:
        record = client.get(job.id)
        return record.status == "running" and record.progress.epoch >= 1

    wait_until(training, 60, "the job to train its first epoch")
    cancelled = client.cancel(job.id)
    assert cancelled.status == "cancelled"
    assert job.id not in server.dispatcher.in_flight
    http = server.http()
    again = http.post(f"/v1/experiments/{job.id}/cancel")
    assert again.status_code == 409
    record = client.get(job.id)
    assert record.status == "cancelled" and record.progress.epoch < 5000
    run = MlflowClient(tracking_uri=server.settings.tracking_uri).get_run(
        record.mlflow_run_id)
    assert run.info.status == "KILLED"


def test_catalog_and_health(server):
    http = server.http()
    catalog = http.get("/v1/catalog").json()
    kinds = {m["kind"] for m in catalog["models"]}
    assert {"linear", "mlp"} <= kinds
    assert all(m["schema"]["properties"]["kind"] for m in catalog["models"])
    names = {d["name"] for d in catalog["datasets"]}
    assert {"digits", "xor", "circles", "moons", "spirals", "blobs", "function"} <= names
    assert "prelu" in catalog["activations"] and "rmsprop" in catalog["optimizers"]
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {
        "store": "ok", "ray": "ok", "mlflow": "ok", "dispatcher": "ok"}
    assert http.get("/v1/experiments/does-not-exist").status_code == 404


def test_resources_beyond_any_node_are_refused(server):
    http = server.http()
    for resources, loc in (({"gpus": 1}, ["resources", "gpus"]),
                           ({"custom": {"tpu": 1}}, ["resources", "custom", "tpu"])):
        response = http.post("/v1/experiments", json=mlp_spec(resources=resources))
        assert response.status_code == 422
        assert [e["loc"] for e in response.json()["errors"]] == [loc]
        assert "largest node" in response.json()["detail"]


def test_prometheus_metrics_count_jobs(server):
    client = server.client()
    client.wait(client.submit(mlp_spec(training={"epochs": 1})).id, timeout=120)
    text = server.http().get("/metrics").text
    assert 'layerwise_jobs{status="succeeded"}' in text
    started = [line for line in text.splitlines()
               if line.startswith('layerwise_jobs_started_total{job_type="experiment"}')]
    assert started and float(started[0].split()[-1]) >= 1
    assert ('layerwise_api_request_seconds_count{method="POST",route="/v1/experiments",'
            'status="201"}') in text  # by route template, not by raw path
    assert "layerwise_dispatch_latency_seconds_count" in text
