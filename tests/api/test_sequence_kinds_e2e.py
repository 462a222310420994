"""The sequence kinds end to end: each once through REST on a local Ray, recorded in MLflow;
impossible sequence specs refused with 422 naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.utils.specs import merge

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def seq_spec(data: dict, model: dict, **overrides) -> dict:
    base = {"name": f"e2e-{model['kind']}", "project": "tests-sequence-kinds", "data": data,
            "model": model, "optimizer": {"name": "adam", "lr": 0.01},
            "training": {"epochs": 1, "batch_size": 32}}
    return merge(base, overrides)


TEXT = {"name": "text", "params": {"length": 16, "max_chars": 3000}}
RUNS = {
    "rnn": seq_spec({"name": "adding", "params": {"n": 200, "length": 10}},
                    {"kind": "rnn", "cell": "lstm", "hidden": 8, "layers": 2},
                    diagnostics={"every_steps": 2}),
    "transformer": seq_spec(TEXT, {"kind": "transformer", "width": 16, "heads": 2,
                                   "layers": 1, "context": 8},
                            training={"epochs": 2}, regularization={"dropout": 0.1}),
    "autoregressive": seq_spec({"name": "sine", "params": {"n": 100, "length": 20}},
                               {"kind": "autoregressive", "channels": 8, "layers": 2}),
    "captioner": seq_spec({"name": "digit_captions", "val_fraction": 0.1},
                          {"kind": "captioner", "hidden": 16, "channels": [4]}),
}


def test_every_sequence_kind_trains_through_rest_and_ray(server, tmp_path):
    client = server.client()
    jobs = {kind: client.submit(spec).id for kind, spec in RUNS.items()}
    done = {kind: client.wait(job, timeout=240) for kind, job in jobs.items()}
    for kind, record in done.items():
        assert record.status == "succeeded", (kind, record.error)
    mlflow = MlflowClient(tracking_uri=server.settings.tracking_uri)

    rnn = done["rnn"]
    path = mlflow.download_artifacts(rnn.mlflow_run_id, "layers.json", str(tmp_path))
    layers = json.loads(Path(path).read_text())
    assert layers[:4] == ["rnn.0.forget_gate", "rnn.0.input_gate", "rnn.0.output_gate",
                          "rnn.0.cell_input"] and layers[-1] == "head"
    steps = rnn.progress.step
    for layer in ("rnn.0.forget_gate", "rnn.1.input_gate", "rnn.1.cell_input"):
        for prefix in ("grad_norm", "update_norm"):
            points = client.metric_history(jobs["rnn"], f"{prefix}/{layer}")
            assert [p.step for p in points] == list(range(0, steps, 2)), (prefix, layer)
            assert all(p.value > 0 for p in points), (prefix, layer)
    assert "val/mse" in rnn.result

    lm = done["transformer"]
    assert lm.result["val/perplexity"] > 1.0
    assert len(client.metric_history(jobs["transformer"], "val/perplexity")) == 2
    samples = {a.path for a in mlflow.list_artifacts(lm.mlflow_run_id, "samples")}
    assert samples == {"samples/epoch_001.txt", "samples/epoch_002.txt"}
    assert "grad_norm/blocks.0.attention.qkv" in client.metric_keys(jobs["transformer"])

    assert "val/mse" in done["autoregressive"].result
    assert {a.path for a in mlflow.list_artifacts(done["autoregressive"].mlflow_run_id,
                                                  "samples")} == {"samples/epoch_001.txt"}
    assert 0.0 < done["captioner"].result["val/accuracy"] <= 1.0
    for kind, record in done.items():
        run = mlflow.get_run(record.mlflow_run_id)
        assert run.data.tags["layerwise.model_kind"] == kind


def test_impossible_sequence_specs_get_a_422_naming_the_field(server):
    http = server.http()
    before = http.get("/v1/experiments", params={"limit": 500}).json()["count"]
    rnn = {"kind": "rnn", "hidden": 8}
    cases = [
        (seq_spec(TEXT, {**rnn, "bidirectional": True}), ["model", "bidirectional"],
         "language model"),
        (seq_spec(TEXT, {"kind": "transformer", "causal": False}), ["model", "causal"],
         "copy its target"),
        (seq_spec(TEXT, {"kind": "transformer", "width": 30, "heads": 4}), ["model", "heads"],
         "heads of equal size"),
        (seq_spec(TEXT, {"kind": "transformer", "context": 64}), ["model", "context"],
         "longer than the data's sequences"),
        (seq_spec({"name": "digits"}, rnn), ["model", "kind"], "tabular"),
        (seq_spec({"name": "adding"}, {**rnn, "cell": "gru", "variant": "no_output_gate"}),
         ["model", "variant"], "set cell: lstm"),
        (seq_spec(TEXT, rnn, regularization={"input_noise_std": 0.1}),
         ["regularization", "input_noise_std"], "token ids"),
    ]
    for body, loc, reason in cases:
        response = http.post("/v1/experiments", json=body)
        assert response.status_code == 422, (body, response.text)
        errors = response.json()["errors"]
        matching = [e for e in errors if e["loc"] == loc]
        assert matching and reason in matching[0]["msg"], (loc, errors)
    assert http.get("/v1/experiments", params={"limit": 500}).json()["count"] == before


def test_the_catalog_lists_the_sequence_kinds_and_datasets(server):
    catalog = server.http().get("/v1/catalog").json()
    assert {"rnn", "transformer", "autoregressive", "captioner"} <= {
        m["kind"] for m in catalog["models"]}
    assert {"adding", "copy", "sine", "sentiment", "text", "digit_captions"} <= {
        d["name"] for d in catalog["datasets"]}
    rnn = next(m for m in catalog["models"] if m["kind"] == "rnn")
    assert "full_gate_recurrence" in json.dumps(rnn["schema"])
