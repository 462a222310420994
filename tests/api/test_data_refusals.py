"""Through the real HTTP server: a data file whose labels make millions of classes, or whose
x holds NaN, and a job over the memory cap are refused with 422 naming the file and the array
(or the estimate), before anything user-sized is built."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.utils.server import ServerThread
from tests.utils.settings import local_settings
from tests.utils.specs import mlp_spec

pytestmark = [pytest.mark.e2e]

X = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
Y = np.arange(32) % 2


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    home: Path = tmp_path_factory.mktemp("data_refusals")
    settings = local_settings(home, max_job_memory_bytes=64 * 2**20)
    data = Path(settings.data_root_list[0])
    np.savez(data / "bars.npz", x=X, y=np.r_[Y[:-1], 10_000_000])
    bad_x = X.copy()
    bad_x[7, 2] = np.nan
    np.savez(data / "holes.npz", x=bad_x, y=Y)
    with ServerThread(settings, dispatcher=False) as server:
        yield server


def _refusal(api: ServerThread, spec: dict) -> dict:
    with api.http() as client:
        answer = client.post("/v1/experiments", json=spec)
    assert answer.status_code == 422, answer.text
    return answer.json()


@pytest.mark.parametrize("task", ["auto", "classification"])
def test_ten_million_classes_are_refused_before_the_model_is_built(api, task):
    body = _refusal(api, mlp_spec(data={"source": "file", "name": None, "path": "bars.npz"},
                                  task=task))
    assert body["errors"][0]["loc"] == ["data", "path"]
    assert ("bars.npz: y holds labels up to 10000000, i.e. 10,000,001 classes; the cap "
            "(LAYERWISE_MAX_CLASSES) is 100,000: relabel the classes 0..K-1"
            ) in body["errors"][0]["msg"]


def test_nan_in_x_is_refused_naming_the_file_and_the_row(api):
    body = _refusal(api, mlp_spec(data={"source": "file", "name": None, "path": "holes.npz"}))
    assert body["errors"][0]["loc"] == ["data", "path"]
    assert "holes.npz: x at row 7 holds NaN (1 of 32 rows" in body["errors"][0]["msg"]


def test_a_job_over_the_memory_cap_is_refused_with_its_estimate(api):
    """digits with 4,096-wide layers: 17 M parameters, 273 MB with gradients and Adam."""
    body = _refusal(api, mlp_spec(model={"kind": "mlp", "hidden": [4096, 4096]}))
    error = body["errors"][0]
    assert error["loc"] == ["optimizer", "name"], error
    assert "this job needs an estimated peak of 263.2 MiB" in error["msg"]
    assert "LAYERWISE_MAX_JOB_MEMORY_BYTES) of 64.0 MiB" in error["msg"]
    assert "parameters 65." in error["msg"]


def test_an_accepted_job_keeps_its_memory_estimate_in_its_record(api):
    with api.http() as client:
        made = client.post("/v1/experiments", json=mlp_spec())
        assert made.status_code == 201, made.text
        record = client.get(f"/v1/experiments/{made.json()['id']}").json()
    estimate = record["memory_estimate"]
    parts = ("parameters", "gradients", "optimizer_state", "activations", "data")
    assert estimate["total"] == sum(estimate[part] for part in parts) > 0
    assert estimate["optimizer_state"] == 2 * estimate["gradients"]  # Adam's two moments
