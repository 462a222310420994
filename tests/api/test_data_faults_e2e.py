"""End to end (HTTP, Ray, MLflow): a user's .npz whose features reach ~4,000 gets a `bad_data`
/ `unscaled_inputs` diagnosis in its record at submission and, once its run saturates, as the
cause with the fix `data.standardize: inputs`; the spec resubmitted with that fix trains, and
its run logs what the standardization fitted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.utils.specs import mlp_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RNG = np.random.default_rng(0)
X = RNG.normal(size=(600, 8)).astype(np.float32)
Y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
# Two informative features at unit scale beside features up to ~4,000: tanh units saturate.
WIDE = (X * np.array([1, 1, 10, 100, 1000, 4000, 1, 1], np.float32)).astype(np.float32)
SPEC = mlp_spec(name="wide", data={"source": "file", "name": None, "path": "wide.npz"},
                model={"hidden": [32, 32], "activation": "tanh"},
                optimizer={"name": "sgd", "lr": 0.1},
                training={"epochs": 8, "batch_size": 32}, diagnostics={"plots": False})


def test_unscaled_inputs_are_the_cause_and_standardizing_them_trains(server):
    client = server.client()
    np.savez(Path(server.settings.data_root_list[0]) / "wide.npz", x=WIDE, y=Y)
    submitted = client.submit(SPEC)
    at_submission = submitted.diagnosis
    assert at_submission is not None and at_submission["verdict"] == "bad_data"
    assert at_submission["findings"][0]["evidence"]["fault"] == "unscaled_inputs"

    done = client.wait(submitted.id, timeout=240)
    assert done.status == "succeeded", done.error
    primary = done.diagnosis["findings"][0]
    assert done.diagnosis["verdict"] == "bad_data", done.diagnosis["verdict"]
    assert primary["evidence"]["fault"] == "unscaled_inputs"
    assert primary["evidence"]["feature_std_max"] > 1000
    assert primary["fix"] == {"data.standardize": "inputs"}

    fixed_spec = {**SPEC, "name": "wide standardized",
                  "data": {**SPEC["data"], "standardize": primary["fix"]["data.standardize"]}}
    fixed = client.wait(client.submit(fixed_spec).id, timeout=240)
    assert fixed.status == "succeeded", fixed.error
    assert fixed.diagnosis["verdict"] != "bad_data"
    assert fixed.result["val/accuracy"] > max(0.85, done.result["val/accuracy"] + 0.1)
    tracking = MlflowClient(tracking_uri=server.settings.tracking_uri)
    path = tracking.download_artifacts(fixed.mlflow_run_id, "standardization.json",
                                       str(server.settings.home_dir))
    fitted = json.loads(Path(path).read_text())
    assert fitted["inputs"]["std"][5] == pytest.approx(4000, rel=0.2)
