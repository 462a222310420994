"""Data-parallel training on 2 Ray Train workers (gloo on the CPU) against one worker: the
same updates, so the same metrics and per-layer norms, logged once by rank 0."""

from __future__ import annotations

import numpy as np
import pytest
import ray
from mlflow.tracking import MlflowClient

from tests.utils.settings import worker_settings
from tests.utils.specs import mlp_spec
from workers.run import run_experiment
from workers.runtime.progress_board import ProgressBoard
from workers.runtime.ray_train import run_data_parallel

pytestmark = [pytest.mark.slow]

# 1437 training examples in batches of 50: the last batch (37) splits unevenly, 19 and 18.
SPEC = mlp_spec(model={"hidden": [32, 32]}, optimizer={"name": "sgd", "lr": 0.1,
                                                        "momentum": 0.9},
                training={"epochs": 2, "batch_size": 50},
                regularization={"l2": 1e-4})


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_two_workers_match_one_and_log_once(ray_cluster, settings):
    single_reports: list[dict] = []
    single = run_experiment("single", SPEC, worker_settings(settings), single_reports.append)
    board = ProgressBoard.remote()
    parallel = run_data_parallel("parallel", {**SPEC, "resources": {"workers": 2}},
                                 worker_settings(settings), board)
    reports = ray.get(board.drain.remote())["parallel"]
    run_ids = [single_reports[0]["mlflow_run_id"],
               next(r["mlflow_run_id"] for r in reports if "mlflow_run_id" in r)]
    client = MlflowClient(tracking_uri=settings.tracking_uri)

    assert parallel["steps"] == single["steps"] == 2 * 29
    for key in ("val/loss", "val/accuracy", "train/loss"):
        assert parallel[key] == pytest.approx(single[key], rel=1e-4, abs=1e-7), key
    for key in ("grad_norm/layers.0", "grad_norm/total", "update_norm/layers.2",
                "train/loss", "val/loss"):
        one, two = (_history(client, run_id, key) for run_id in run_ids)
        assert [step for step, _ in two] == [step for step, _ in one], key  # logged once
        np.testing.assert_allclose([v for _, v in two], [v for _, v in one],
                                   rtol=1e-4, atol=1e-7, err_msg=key)
    progress = [r["progress"]["epoch"] for r in reports if "progress" in r]
    assert progress == [1, 2]  # rank 0 alone reports
    assert client.get_run(run_ids[1]).info.status == "FINISHED"


@pytest.mark.e2e
def test_a_two_worker_job_runs_through_the_service(server):
    client = server.client()
    job = client.submit({**SPEC, "name": "two-workers", "resources": {"workers": 2}})
    done = client.wait(job.id, timeout=300)
    assert done.status == "succeeded", done.error
    assert done.progress.epoch == 2 and done.result["steps"] == 2 * 29
    points = client.metric_history(job.id, "grad_norm/layers.0")
    assert [p.step for p in points] == list(range(2 * 29))  # one per step: rank 0 only
    assert done.result["val/accuracy"] > 0.8


@pytest.mark.e2e
def test_what_multi_worker_training_cannot_do_is_refused_with_the_field(server):
    http = server.http()
    patterns = {"name": "patterns", "params": {"patterns": 4, "size": 64, "copies": 8}}
    cases = [
        ({**SPEC, "resources": {"workers": 3}}, ["resources", "workers"]),  # 2 CPUs here
        ({**SPEC, "data": patterns, "model": {"kind": "hopfield"},
          "resources": {"workers": 2}}, ["resources", "workers"]),
    ]
    for body, loc in cases:
        response = http.post("/v1/experiments", json=body)
        assert response.status_code == 422, response.text
        assert loc in [e["loc"] for e in response.json()["errors"]], response.json()
        assert "resources.workers" in response.text
    sweep = {"base": {**SPEC, "resources": {"workers": 2}},
             "space": {"optimizer.lr": {"type": "choice", "values": [0.1, 0.01]}}}
    response = http.post("/v1/sweeps", json=sweep)
    assert response.status_code == 422, response.text
    assert ["base", "resources", "workers"] in [e["loc"] for e in response.json()["errors"]]
