"""End to end: the verdict in the job record, the analyses' metrics and artifacts, and
`GET /v1/compare` and `layerwise compare` over real runs (HTTP, Ray, MLflow on SQLite)."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from api.cli import app as cli
from tests.utils.specs import mlp_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def two_runs(server, recurrent_job):
    """A vanishing sigmoid net attacked and probed, and a healthy residual ReLU net."""
    client = server.client()
    deep = {"optimizer": {"name": "sgd", "lr": 0.1}, "training": {"epochs": 1}}
    sigmoid = client.submit(mlp_spec(
        **deep, name="sigmoid-6", model={"hidden": [32] * 6, "activation": "sigmoid"},
        analysis={"sensitivity": True, "max_examples": 128,
                  "adversarial": {"fgsm_eps": [0.05, 0.2], "deepfool": True,
                                  "max_examples": 64}}))
    # Healthy means a good fit, not merely gradients that flow: 4 epochs reach one on digits.
    residual = client.submit(mlp_spec(
        optimizer={"name": "sgd", "lr": 0.1}, training={"epochs": 4}, name="residual-6",
        model={"hidden": [32] * 6, "activation": "relu", "residual": True},
        diagnostics={"plots": False}))
    return [client.wait(job.id, timeout=240) for job in (sigmoid, residual)]


@pytest.fixture(scope="module")
def recurrent_job(server):
    """Submitted before the two runs above are waited for, so that they share the cores."""
    return server.client().submit(mlp_spec(
        data={"name": "adding", "params": {"n": 200, "length": 20}},
        model={"kind": "rnn", "cell": "vanilla", "hidden": 8}, training={"epochs": 1},
        analysis={"bptt_norms": True, "max_examples": 32}, diagnostics={"every_steps": 5}))


def test_a_recurrent_run_logs_its_gradient_through_time(server, recurrent_job, two_runs):
    client = server.client()
    done = client.wait(recurrent_job.id, timeout=240)
    assert done.status == "succeeded", done.error
    assert done.result["bptt/first_over_last"] > 0
    assert 0 < done.result["bptt/decay_per_step"] < 2
    mlflow = MlflowClient(tracking_uri=server.settings.tracking_uri)
    run_id = done.mlflow_run_id
    assert "bptt_norms.json" in {a.path for a in mlflow.list_artifacts(run_id)}
    assert "plots/bptt_norms.png" in {a.path for a in mlflow.list_artifacts(run_id, "plots")}
    path = mlflow.download_artifacts(run_id, "bptt_norms.json", str(server.settings.home_dir))
    with open(path) as handle:
        assert len(json.load(handle)["norms"]["20"]["norm"]) == 20


def test_the_record_carries_the_verdict_and_the_analyses(server, two_runs):
    sigmoid, residual = two_runs
    assert sigmoid.status == "succeeded", sigmoid.error
    assert residual.status == "succeeded", residual.error
    assert sigmoid.diagnosis["verdict"] == "vanishing"
    assert sigmoid.diagnosis["layers"] == [f"layers.{i}" for i in range(6)] + ["output"]
    assert residual.diagnosis["verdict"] == "healthy"
    result = sigmoid.result
    assert "diagnosis" not in result
    assert {"robust/clean_accuracy", "robust/fgsm_accuracy/eps_0.05",
            "robust/fgsm_accuracy/eps_0.2", "robust/deepfool_flipped_fraction"} <= set(result)

    mlflow = MlflowClient(tracking_uri=server.settings.tracking_uri)
    run_id = sigmoid.mlflow_run_id
    assert mlflow.get_run(run_id).data.tags["layerwise.diagnosis"] == "vanishing"
    artifacts = {a.path for a in mlflow.list_artifacts(run_id)}
    assert {"diagnosis.json", "sensitivity.json", "adversarial.json"} <= artifacts
    plots = {a.path for a in mlflow.list_artifacts(run_id, "plots")}
    assert {"plots/grad_norm_heatmap.png", "plots/sensitivity.png", "plots/adversarial.png",
            "plots/adversarial_examples.png"} <= plots
    assert not mlflow.list_artifacts(residual.mlflow_run_id, "plots")  # plots: false
    path = mlflow.download_artifacts(run_id, "sensitivity.json", str(server.settings.home_dir))
    with open(path) as handle:
        assert sorted(json.load(handle)["ranking"]) == list(range(64))


def test_compare_puts_the_runs_side_by_side(server, two_runs):
    ids = [run.id for run in two_runs]
    http = server.http()
    table = http.get("/v1/compare", params={"ids": ",".join(ids)})
    assert table.status_code == 200, table.text
    body = table.json()
    assert body["metric"] == "grad_norm"
    assert [r["id"] for r in body["runs"]] == ids
    assert [r["verdict"] for r in body["runs"]] == ["vanishing", "healthy"]
    sigmoid, residual = body["runs"]
    assert [s["layer"] for s in sigmoid["layers"]][0] == "layers.0"
    assert all(s["median"] > 0 for s in sigmoid["layers"])
    assert sigmoid["first_last_ratio"] < 1e-2 < residual["first_last_ratio"]
    # the loss and accuracy curves, by epoch (1 and 4 epochs), ending where the result does
    assert set(residual["curves"]) == {"train/loss", "val/loss", "train/accuracy",
                                       "val/accuracy"}
    assert [len(run["curves"]["val/loss"]["steps"]) for run in body["runs"]] == [1, 4]
    assert residual["curves"]["val/accuracy"]["values"][-1] == pytest.approx(
        two_runs[1].result["val/accuracy"])

    figure = http.get("/v1/compare", params={"ids": f"{ids[0]},{ids[1]}",
                                             "metric": "update_norm", "format": "png"})
    assert figure.status_code == 200
    assert figure.headers["content-type"] == "image/png" and figure.content.startswith(PNG)
    height = int.from_bytes(figure.content[20:24], "big")
    assert height > 600  # the per-layer panels, and the loss and accuracy overlays below

    assert http.get("/v1/compare", params={"ids": f"{ids[0]},nope"}).status_code == 404
    once = http.get("/v1/compare", params={"ids": f"{ids[0]},{ids[0]}"})  # the same run once
    assert once.status_code == 200 and len(once.json()["runs"]) == 1
    too_many = http.get("/v1/compare", params={"ids": ",".join([ids[0]] * 9)})
    assert too_many.status_code == 422 and too_many.json()["errors"][0]["loc"] == ["query", "ids"]
    bad_metric = http.get("/v1/compare", params={"ids": ids[0], "metric": "loss"})
    assert bad_metric.status_code == 422 and bad_metric.json()["errors"][0]["loc"] == [
        "query", "metric"]


def test_layerwise_compare_prints_the_table_and_saves_the_figure(server, two_runs, tmp_path):
    out = tmp_path / "compare.png"
    ids = [run.id for run in two_runs]
    shown = CliRunner().invoke(cli, ["compare", *ids, "--out", str(out), "--url", server.url],
                               env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "sigmoid-6" in shown.output and "vanishing" in shown.output
    assert "healthy" in shown.output and "layers.0" in shown.output
    assert "loss and accuracy" in shown.output and "val/accuracy" in shown.output
    assert out.read_bytes().startswith(PNG)
