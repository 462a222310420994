"""The feed-forward and energy-based kinds end to end: each over REST, on a local Ray,
recorded in MLflow like an MLP (metrics, per-layer norms, the model) plus what each kind shows
of itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.utils.specs import merge

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FAST = {"project": "tests-feedforward-kinds", "optimizer": {"name": "adam", "lr": 0.01},
        "training": {"epochs": 2, "batch_size": 128}, "diagnostics": {"every_steps": 2}}
PATTERNS = {"name": "patterns", "params": {"patterns": 4, "size": 64, "copies": 8}}
DIGIT_PATTERNS = {"name": "patterns", "params": {"source": "digits", "patterns": 300,
                                                 "copies": 1, "corruption": 0.0}}

# kind -> (spec overrides, plots the run must hold)
RUNS = {
    "kernel": ({"data": {"name": "circles"}, "model": {"kind": "kernel", "degree": 2}}, []),
    "resnet": ({"data": {"name": "digits"}, "model": {"kind": "resnet", "depth": 5,
                                                      "width": 16, "skip": "weighted"}}, []),
    "cnn": ({"data": {"name": "digits", "params": {"layout": "image"}},
             "model": {"kind": "cnn", "conv": [{"channels": 4}], "dense": [16]}},
            ["plots/cnn_feature_maps.png"]),
    "hopfield": ({"data": PATTERNS, "model": {"kind": "hopfield",
                                              "capacity_max_patterns": 8}},
                 ["plots/hopfield_energy.png", "plots/hopfield_capacity.png",
                  "plots/hopfield_recall.png"]),
    "rbm": ({"data": DIGIT_PATTERNS, "model": {"kind": "rbm", "hidden": 16,
                                                "sample_steps": 20}},
            ["plots/rbm_gibbs_samples.png", "plots/rbm_filters.png"]),
    "autoencoder": ({"data": {"name": "digits"},
                     "model": {"kind": "autoencoder", "hidden": [16, 8], "pretrain_epochs": 1,
                               "pretrain_batch_size": 256}}, []),
}


def test_every_new_kind_runs_end_to_end_and_records_itself(server):
    client = server.client()
    jobs = {kind: client.submit(merge(FAST, {"name": f"e2e-{kind}", **overrides}))
            for kind, (overrides, _) in RUNS.items()}
    mlflow = MlflowClient(tracking_uri=server.settings.tracking_uri)
    for kind, job in jobs.items():
        done = client.wait(job.id, timeout=240)
        assert done.status == "succeeded", (kind, done.error)
        run_id = done.mlflow_run_id
        run = mlflow.get_run(run_id)
        assert run.data.tags["layerwise.model_kind"] == kind
        assert "val/loss" in done.result
        layers = mlflow.download_artifacts(run_id, "layers.json", str(server.settings.home))
        for layer in json.loads(Path(layers).read_text()):  # what each update changed
            points = client.metric_history(job.id, f"update_norm/{layer}")
            assert points and any(p.value > 0 for p in points), (kind, layer)
        plots = {a.path for a in mlflow.list_artifacts(run_id, "plots")}
        assert set(RUNS[kind][1]) <= plots, (kind, plots)
        models = mlflow.search_logged_models(experiment_ids=[done.mlflow_experiment_id])
        assert any(m.source_run_id == run_id for m in models), kind

    hopfield = jobs["hopfield"].id
    assert client.get(hopfield).result["val/accuracy"] == 1.0  # 4 patterns in 64 units
    capacity = client.metric_history(hopfield, "hopfield/capacity")
    assert [p.step for p in capacity][0] == 1 and capacity[0].value == 1.0
    energy = [p.value for p in client.metric_history(hopfield, "hopfield/energy")]
    assert len(energy) > 64 and energy[-1] <= energy[0]
    assert client.metric_history(jobs["rbm"].id, "train/free_energy")

    autoencoder = jobs["autoencoder"].id
    stages = [client.metric_history(autoencoder, f"pretrain/layer_{i}/loss") for i in (0, 1)]
    fine_tuning = client.metric_history(autoencoder, "train/loss")
    assert stages[0][-1].step < stages[1][0].step < fine_tuning[0].step
    assert client.metric_history(autoencoder, "grad_norm/encoder.0")[0].step > (
        stages[1][-1].step)


def test_configs_that_cannot_work_are_refused_with_the_field(server):
    http = server.http()
    patterns = {"data": PATTERNS, "model": {"kind": "hopfield"}}
    image = {"data": {"name": "digits", "params": {"layout": "image"}}}
    cases = [
        (merge(patterns, {"regularization": {"dropout": 0.5}}), ["regularization", "dropout"]),
        (merge(patterns, {"regularization": {"input_noise_std": 0.1}}),
         ["regularization", "input_noise_std"]),
        ({"data": {"name": "digits"}, "model": {"kind": "cnn"}}, ["model", "input_shape"]),
        ({**image, "model": {"kind": "cnn", "conv": [{"kernel_size": 12, "padding": 1}]}},
         ["model", "conv", 0, "kernel_size"]),
        ({**image, "model": {"kind": "cnn", "conv": [{"pool_size": 0}]}},
         ["model", "cnn", "conv", 0, "pool_size"]),
        ({**image, "model": {"kind": "cnn", "conv": [{"pool_size": 3}, {"pool_size": 3}]}},
         ["model", "conv", 1, "pool_size"]),
        ({"data": {"name": "digits"}, "model": {"kind": "hopfield"}}, ["model", "kind"]),
        ({"data": {"name": "digits"}, "model": {"kind": "kernel", "degree": 5}},
         ["model", "degree"]),
        ({"data": {"name": "digits"}, "model": {"kind": "resnet", "skip": "diagonal"}},
         ["model", "resnet", "skip"]),
        ({"data": {"name": "patterns", "params": {"corruption": 0.9}},
          "model": {"kind": "rbm"}}, ["data", "params", "corruption"]),
    ]
    for body, loc in cases:
        response = http.post("/v1/experiments", json=body)
        assert response.status_code == 422, (body, response.text)
        errors = response.json()["errors"]
        assert loc in [e["loc"] for e in errors], (loc, errors)
        assert all(e["msg"] for e in errors)


def test_catalog_lists_the_new_kinds_and_the_patterns_data(server):
    catalog = server.http().get("/v1/catalog").json()
    models = {m["kind"]: m for m in catalog["models"]}
    for kind in RUNS:
        assert models[kind]["description"] and models[kind]["schema"]["properties"]["kind"]
    assert models["hopfield"]["supports"] == [] and models["rbm"]["supports"] == []
    patterns = next(d for d in catalog["datasets"] if d["name"] == "patterns")
    assert {"source", "corruption", "patterns"} <= set(patterns["params_schema"]["properties"])
