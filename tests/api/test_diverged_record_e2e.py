"""End to end (HTTP, Ray, MLflow): a run whose loss turns non-finite in its first steps, the
very first included, fails with its diagnosis in the job record (its findings, a fix with
ranked alternatives, the `layerwise.diagnosis` tag), and `POST .../repair` makes the repair
(201). Before, the record's diagnosis was empty and repair answered 409."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.utils.specs import mlp_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

X = np.random.default_rng(0).normal(size=(256, 4)).astype(np.float32)
FILE = {"source": "file", "name": None}
# A linear net (identity activations) at SGD rate 10 on unit-scale data: the loss is inf by
# the third step, before the first epoch (4 steps) ends.
RATE = mlp_spec(name="rate", data={**FILE, "path": "unit.npz"},
                model={"hidden": [64, 64], "activation": "identity"},
                optimizer={"name": "sgd", "lr": 10.0},
                training={"epochs": 2, "batch_size": 64}, diagnostics={"plots": False})
# Regression targets of ~1e30: their square is not finite in float32, so the loss of the very
# first step (step 0) is inf, before any update, epoch or norm was recorded.
AT_ONCE = mlp_spec(name="at-once", data={**FILE, "path": "huge.npz"}, model={"hidden": [16]},
                   optimizer={"name": "sgd", "lr": 0.1},
                   training={"epochs": 2, "batch_size": 64}, diagnostics={"plots": False})


def _failed_with_diagnosis(server: Any, spec: dict[str, Any]) -> Any:
    client = server.client()
    data = Path(server.settings.data_root_list[0])
    np.savez(data / "unit.npz", x=X, y=X.sum(axis=1, keepdims=True))
    np.savez(data / "huge.npz", x=X, y=X.sum(axis=1, keepdims=True) * np.float32(1e30))
    failed = client.wait(client.submit(spec).id, timeout=180)
    assert failed.status == "failed" and "diverged at step" in failed.error, failed.error
    assert failed.diagnosis, "the record of a diverged run has no diagnosis"
    run = MlflowClient(tracking_uri=server.settings.tracking_uri).get_run(failed.mlflow_run_id)
    assert run.data.tags["layerwise.diagnosis"] == failed.diagnosis["verdict"]
    return failed


def test_a_run_that_diverges_in_its_first_steps_is_diagnosed_and_repaired(server):
    failed = _failed_with_diagnosis(server, RATE)
    diagnosis = failed.diagnosis
    assert diagnosis["verdict"] == "diverged"
    assert 0 < diagnosis["detected_at_step"] < 4  # within the first epoch
    primary = diagnosis["findings"][0]
    assert primary["verdict"] == "diverged" and primary["fix"]["optimizer.lr"] < 10.0
    assert primary["alternatives"], "no ranked alternatives"

    repaired = server.http().post(f"/v1/experiments/{failed.id}/repair")
    assert repaired.status_code == 201, repaired.text
    body = repaired.json()
    assert body["repair_of"] == failed.id and body["repair_candidate"] == 0
    assert body["spec"]["optimizer"]["lr"] == primary["fix"]["optimizer.lr"]


def test_a_run_whose_first_loss_is_not_finite_has_its_diagnosis_from_step_0(server):
    """Which cause leads (the targets' scale) is the engine's; the record has it, the
    divergence among its findings, and the repair is made."""
    failed = _failed_with_diagnosis(server, AT_ONCE)
    diagnosis = failed.diagnosis
    assert diagnosis["detected_at_step"] == 0
    diverged = [f for f in diagnosis["findings"] if f["verdict"] == "diverged"]
    assert diverged and diverged[0]["evidence"]["step"] == 0
    assert diagnosis["findings"][0]["fix"], diagnosis["findings"][0]
    repaired = server.http().post(f"/v1/experiments/{failed.id}/repair")
    assert repaired.status_code == 201, repaired.text
