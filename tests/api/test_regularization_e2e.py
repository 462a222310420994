"""Regularization over the real HTTP API: settings that do not apply are refused with a 422
naming the field, and a regularized run on Ray shows train/penalty and early stopping."""

from __future__ import annotations

import pytest

from tests.utils.specs import mlp_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_settings_that_do_not_apply_are_refused_over_http(server):
    http = server.http()
    before = http.get("/v1/experiments", params={"limit": 500}).json()["count"]
    linear = mlp_spec(regularization={"dropout": 0.3})
    linear["model"] = {"kind": "linear"}
    cases = [
        (linear, ["regularization", "dropout"], "does not support dropout"),
        (mlp_spec(regularization={"input_flip_prob": 0.1}),
         ["regularization", "input_flip_prob"], "binary"),
        (mlp_spec(regularization={"unit_norm": True, "max_norm": 1.0}),
         ["regularization"], "keep one"),
    ]
    for body, loc, words in cases:
        response = http.post("/v1/experiments", json=body)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        errors = {tuple(e["loc"]): e["msg"] for e in response.json()["errors"]}
        assert words in errors[tuple(loc)], errors
    assert http.get("/v1/experiments", params={"limit": 500}).json()["count"] == before


def test_a_regularized_run_logs_train_penalty_and_early_stopping_facts(server):
    client = server.client()
    spec = mlp_spec(regularization={"l2": 1e-3, "dropout": 0.2,
                                    "early_stopping": {"patience": 1}},
                    training={"epochs": 3})
    done = client.wait(client.submit(spec).id, timeout=180)
    assert done.status == "succeeded", done.error
    result = done.result
    val_loss = [p.value for p in client.metric_history(done.id, "val/loss")]
    assert result["epochs_run"] == len(val_loss)
    best = val_loss.index(min(val_loss)) + 1  # the lowest, 1-based
    assert result["best_epoch"] == best
    # Patience 1: the first epoch after the best that does not improve stops the training.
    assert result["epochs_run"] == min(3, best + 1)
    assert (result.get("stop_reason") == "early_stopping") == (best < result["epochs_run"])
    assert result["best/val/loss"] == result["val/loss"]  # the best weights were restored
    penalty = client.metric_history(done.id, "train/penalty")
    assert len(penalty) == result["epochs_run"] and all(p.value > 0 for p in penalty)
