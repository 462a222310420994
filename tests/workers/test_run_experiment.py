"""The worker without Ray: one loop, real MLflow on SQLite, per-layer curves as promised."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.utils.settings import worker_settings
from tests.utils.specs import mlp_spec
from workers.run import RunHooks, RunOptions, run_experiment
from workers.runtime.orphan_guard import Orphaned
from workers.training.checkpoints import checkpoint_path


def _run(settings, spec):
    worker = worker_settings(settings)
    reports: list[dict] = []
    result = run_experiment("job-1", spec, worker, reports.append)
    run_id = reports[0]["mlflow_run_id"]
    return result, MlflowClient(tracking_uri=settings.tracking_uri), run_id, reports


def _first_over_last(client, run_id, layers, steps=10):
    first = [m.value for m in client.get_metric_history(run_id, f"grad_norm/{layers[0]}")]
    last = [m.value for m in client.get_metric_history(run_id, f"grad_norm/{layers[-1]}")]
    return float(np.median(np.array(first[:steps]) / np.array(last[:steps])))


@pytest.mark.slow
def test_deep_sigmoid_vanishes_where_residual_relu_does_not(settings):
    deep = {"data": {"name": "digits"}, "optimizer": {"name": "sgd", "lr": 0.1},
            "training": {"epochs": 1}}
    sigmoid = mlp_spec(**deep, model={"hidden": [64] * 6, "activation": "sigmoid",
                                      "init": "small_normal"})
    residual = mlp_spec(**deep, model={"hidden": [64] * 6, "activation": "relu",
                                       "residual": True, "init": "small_normal"})
    _, client, sig_run, _ = _run(settings, sigmoid)
    with open(client.download_artifacts(sig_run, "layers.json", str(settings.home_dir))) as f:
        layers = json.load(f)
    assert layers == [f"layers.{i}" for i in range(6)] + ["output"]
    _, _, res_run, _ = _run(settings, residual)
    sigmoid_ratio = _first_over_last(client, sig_run, layers)
    residual_ratio = _first_over_last(client, res_run, layers)
    assert sigmoid_ratio < 1e-3, sigmoid_ratio
    assert residual_ratio > 0.1, residual_ratio


def test_norms_every_k_steps_and_reports(settings):
    spec = mlp_spec(data={"name": "xor", "params": {"n": 200}}, model={"hidden": [8]},
                    diagnostics={"every_steps": 4, "weight_norms": False},
                    training={"epochs": 3, "batch_size": 16})
    result, client, run_id, reports = _run(settings, spec)
    steps = result["steps"]
    assert steps == 3 * 10  # 160 training examples / 16
    points = client.get_metric_history(run_id, "grad_norm/layers.0")
    assert [p.step for p in points] == list(range(0, steps, 4))
    assert client.get_metric_history(run_id, "weight_norm/layers.0") == []
    epochs = [r["progress"]["epoch"] for r in reports if "progress" in r]
    assert epochs[0] == 1 and epochs[-1] == 3 and epochs == sorted(set(epochs))  # throttled
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params["model.kind"] == "mlp"
    assert {"train/loss", "train/accuracy", "val/loss", "val/accuracy", "lr",
            "throughput/samples_per_s"} <= set(run.data.metrics)
    assert result["param_count"] == 2 * 8 + 8 + 8 + 1


def test_update_norm_is_the_weight_change_of_that_step(settings):
    """With plain SGD the update of the output layer is lr * its gradient norm."""
    spec = mlp_spec(data={"name": "function", "params": {"n": 64}}, model={"hidden": [4]},
                    optimizer={"name": "sgd", "lr": 0.05}, training={"epochs": 1})
    _, client, run_id, _ = _run(settings, spec)
    grads = [m.value for m in client.get_metric_history(run_id, "grad_norm/output")]
    updates = [m.value for m in client.get_metric_history(run_id, "update_norm/output")]
    assert len(grads) == len(updates) > 0
    assert np.allclose(np.array(updates), 0.05 * np.array(grads), rtol=1e-3)


def test_universal_approximation_with_a_few_tanh_units(settings):
    spec = mlp_spec(data={"name": "function", "params": {"fn": "sin", "n": 256}},
                    model={"hidden": [8], "activation": "tanh"},
                    optimizer={"name": "adam", "lr": 0.03},
                    training={"epochs": 60, "batch_size": 32})
    result, *_ = _run(settings, spec)
    assert result["val/mse"] < 0.02  # the variance of sin(pi x) on [-1, 1] is 0.5


def test_a_worker_orphaned_after_training_leaves_run_and_checkpoint_to_the_retry(settings):
    """The guard's last check comes after training's reports: an orphan found there neither
    closes the MLflow run nor deletes the checkpoint the re-queued attempt resumes from."""
    worker = worker_settings(settings, checkpoint_every_s=0)
    spec = mlp_spec(data={"name": "xor", "params": {"n": 64}}, model={"hidden": [4]},
                    training={"epochs": 2})
    reports: list[dict] = []

    class OrphanedAfterTraining(RunHooks):
        def before_finish(self, tracker) -> None:
            raise Orphaned("the raylet is gone")

    with pytest.raises(Orphaned):
        run_experiment("job-orphan", spec, worker, reports.append,
                       RunOptions(hooks=OrphanedAfterTraining()))
    run = MlflowClient(tracking_uri=settings.tracking_uri).get_run(reports[0]["mlflow_run_id"])
    assert run.info.status == "RUNNING"
    assert checkpoint_path(worker.home, "job-orphan").exists()

    retried = run_experiment("job-orphan", spec, worker, reports.append,
                             RunOptions(run_id=run.info.run_id))
    assert retried["resumed_from_epoch"] == 2
    assert not checkpoint_path(worker.home, "job-orphan").exists()
