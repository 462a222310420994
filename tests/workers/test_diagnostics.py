"""The gradient-flow verdict, the sampled activation statistics, and their cost when off."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from models.base import DataShape
from models.builders import build_model
from services.contract.diagnostics_spec import DiagnosisThresholds
from services.contract.spec import ExperimentSpec
from tests.utils.settings import worker_settings
from tests.utils.specs import mlp_spec
from workers.diagnostics.activations import ActivationSampler
from workers.diagnostics.history import EpochHistory, NormHistory
from workers.diagnostics.session import Diagnostics
from workers.diagnostics.verdicts import diagnose
from workers.run import _callbacks, run_experiment
from workers.training.logging_callbacks import PerLayerNormLogger

DIAGNOSTIC_CALLBACKS = (PerLayerNormLogger, ActivationSampler, EpochHistory)

LAYERS = ["layers.0", "layers.1", "output"]


class ListSink:
    """A metric sink that keeps what it is given."""

    def __init__(self) -> None:
        self.rows: list[tuple[list[str], list[list[float]], list[int]]] = []

    def log_rows(self, keys, rows, steps, timestamps_ms) -> None:
        self.rows.append((list(keys), [list(r) for r in rows], list(steps)))


def _history(grads: np.ndarray, total: np.ndarray | None = None) -> NormHistory:
    """A NormHistory fed as PerLayerNormLogger feeds it: grad norms per layer and the total."""
    history = NormHistory()
    total = np.sqrt((grads ** 2).sum(axis=1)) if total is None else total
    keys = [f"grad_norm/{layer}" for layer in LAYERS] + ["grad_norm/total"]
    rows = np.column_stack([grads, total])
    history.record(keys, rows, list(range(len(rows))))
    return history


def _grads(first: float, steps: int = 40) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = np.column_stack([np.full(steps, first), np.full(steps, 0.1), np.ones(steps)])
    return base * rng.uniform(0.8, 1.2, size=base.shape)


def test_the_verdict_follows_the_evidence_and_its_configurable_thresholds():
    t = DiagnosisThresholds()
    healthy = diagnose(_history(_grads(0.5)).curves(), LAYERS, {}, t)
    assert healthy.verdict == "healthy" and healthy.findings == []
    assert 0.3 < healthy.evidence["first_last_grad_ratio"] < 0.7

    vanishing = diagnose(_history(_grads(1e-5)).curves(), LAYERS, {}, t)
    assert vanishing.verdict == "vanishing"
    assert vanishing.evidence["first_last_grad_ratio"] < 1e-4
    lenient = diagnose(_history(_grads(1e-5)).curves(), LAYERS, {},
                       DiagnosisThresholds(vanishing_ratio=1e-6))
    assert lenient.verdict == "healthy"

    assert diagnose(_history(_grads(1e4)).curves(), LAYERS, {}, t).verdict == "exploding"
    growing = _grads(0.5)
    growing[-5:] *= 1e5
    exploded = diagnose(_history(growing).curves(), LAYERS, {}, t)
    assert exploded.verdict == "exploding" and exploded.evidence["grad_norm_total_growth"] > 1e3
    nan = _grads(0.5)
    nan[10, 1] = np.nan
    nonfinite = diagnose(_history(nan).curves(), LAYERS, {}, t)
    assert nonfinite.evidence["grad_norm_nonfinite_steps"] == 1

    dead = diagnose(_history(_grads(1e-5)).curves(), LAYERS, {"activation/dead_fraction": 0.8},
                    t)
    assert dead.verdict == "dead_units" and dead.verdicts == ["dead_units", "vanishing"]
    saturated = diagnose(_history(_grads(0.5)).curves(), LAYERS,
                         {"activation/saturated_fraction": 0.9}, t)
    assert saturated.verdict == "saturated"
    json.dumps(saturated.as_dict())  # JSON-safe for diagnosis.json and the job record


def test_activation_sampler_finds_dead_relus_and_saturated_sigmoids():
    shape = DataShape((4,), 2, "classification")
    spec = ExperimentSpec.model_validate(mlp_spec(model={"hidden": [8, 8]}))
    relu = build_model(spec.model, shape)
    with torch.no_grad():
        relu.layers[0].bias.fill_(-100.0)  # every unit of the first layer is off
    sink = ListSink()
    sampler = ActivationSampler(relu, torch.randn(32, 4), sink, every_steps=5,
                                saturation_derivative=0.1)
    trainer = SimpleNamespace(step=0)
    sampler.on_train_start(trainer)
    for step in range(1, 11):
        trainer.step = step
        sampler.on_step_end(trainer)
    sampler.on_train_end(trainer)
    final = sampler.final()
    assert sampler.steps == [0, 5, 10]
    assert final["activation/dead_fraction/layers.0.activation"] == 1.0
    # layer 1 sees only its bias: each unit is either always on or always off
    assert final["activation/dead_fraction"] >= 0.5
    assert sink.rows[0][0] == sampler.keys

    sigmoid_spec = ExperimentSpec.model_validate(mlp_spec(model={"hidden": [8],
                                                                 "activation": "sigmoid"}))
    sigmoid = build_model(sigmoid_spec.model, shape)
    with torch.no_grad():
        sigmoid.layers[0].weight.mul_(1000.0)
    sampler = ActivationSampler(sigmoid, torch.randn(32, 4), ListSink(), every_steps=5,
                                saturation_derivative=0.1)
    sampler.on_train_start(trainer)
    sampler.flush()
    assert sampler.final()["activation/saturated_fraction"] > 0.9
    assert sigmoid.training  # the sample pass ran in eval mode and restored the mode


def test_diagnostics_off_registers_nothing_and_gives_no_diagnosis(settings):
    off = {"grad_norms": False, "update_norms": False, "weight_norms": False,
           "activation_stats": False, "plots": False}
    spec = ExperimentSpec.model_validate(mlp_spec(diagnostics=off))
    model = build_model(spec.model, DataShape((64,), 10, "classification"))
    tracker = SimpleNamespace(sink=ListSink(), log_text=lambda text, path: None)
    diagnostics = Diagnostics(spec, model, tracker, DataShape((64,), 10, "classification"))
    base = _callbacks(spec, model, tracker, lambda u: None)
    callbacks = diagnostics.attach(list(base), torch.randn(8, 64))
    assert [type(c) for c in callbacks] == [type(c) for c in base]  # nothing added
    assert not any(isinstance(c, DIAGNOSTIC_CALLBACKS) for c in callbacks)
    assert diagnostics.diagnose() is None

    on = ExperimentSpec.model_validate(mlp_spec())
    diagnostics = Diagnostics(on, model, tracker, DataShape((64,), 10, "classification"))
    callbacks = diagnostics.attach(_callbacks(on, model, tracker, lambda u: None),
                                   torch.randn(8, 64))
    logger = next(c for c in callbacks if isinstance(c, PerLayerNormLogger))
    assert logger.sink is tracker.sink  # the logger logs to the run's own sink
    for kind in DIAGNOSTIC_CALLBACKS:  # the same check, on: each of them is there
        assert any(isinstance(c, kind) for c in callbacks), kind


def test_the_norm_history_records_each_flush_of_the_norm_logger_as_logged():
    spec = ExperimentSpec.model_validate(mlp_spec(diagnostics={"every_steps": 1}))
    model = build_model(spec.model, DataShape((64,), 10, "classification"))
    tracker = SimpleNamespace(sink=ListSink(), log_text=lambda text, path: None)
    diagnostics = Diagnostics(spec, model, tracker, DataShape((64,), 10, "classification"))
    callbacks = diagnostics.attach(_callbacks(spec, model, tracker, lambda u: None),
                                   torch.randn(8, 64))
    logger = next(c for c in callbacks if isinstance(c, PerLayerNormLogger))
    trainer = SimpleNamespace(step=0)
    for step in range(3):
        model(torch.randn(8, 64)).sum().backward()
        logger.on_before_update(trainer)
        logger.on_after_backward(trainer)
        trainer.step = step + 1
        logger.on_step_end(trainer)
    logger.flush()
    keys, rows, steps = tracker.sink.rows[0]
    history = diagnostics.recorders.history
    assert history is not None and history.keys == keys
    assert history.steps.tolist() == steps == [0, 1, 2]
    np.testing.assert_array_equal(history.values(), np.asarray(rows))


def _run(settings, spec):
    worker = worker_settings(settings)
    reports: list[dict] = []
    result = run_experiment("job-diag", spec, worker, reports.append)
    return result, MlflowClient(tracking_uri=settings.tracking_uri), reports[0]["mlflow_run_id"]


@pytest.mark.slow
def test_six_sigmoid_layers_vanish_and_a_residual_relu_net_is_healthy(settings):
    deep = {"optimizer": {"name": "sgd", "lr": 0.1}, "training": {"epochs": 1}}
    sigmoid = mlp_spec(**deep, model={"hidden": [64] * 6, "activation": "sigmoid"})
    # Healthy is a good fit, not only gradients that flow: 4 epochs reach one on digits.
    residual = mlp_spec(optimizer={"name": "sgd", "lr": 0.1}, training={"epochs": 4},
                        model={"hidden": [64] * 6, "activation": "relu", "residual": True},
                        diagnostics={"plots": False})
    result, client, run_id = _run(settings, sigmoid)
    diagnosis = result["diagnosis"]
    assert diagnosis["verdict"] == "vanishing", diagnosis
    assert diagnosis["evidence"]["first_last_grad_ratio"] < 1e-3
    # Stuck at chance: the run is also not learning, and the fix changes the activation.
    assert [f["verdict"] for f in diagnosis["findings"]] == ["vanishing", "not_learning"]
    assert diagnosis["findings"][0]["fix"]["model.activation"] == "relu"
    assert diagnosis["findings"][0]["layers"][0] == "layers.0"
    ratios = diagnosis["evidence"]["update_weight_ratio_median"]
    assert ratios["layers.0"] < 1e-2 * ratios["output"]  # the first layer barely learns
    assert diagnosis["evidence"]["saturated_fraction"] is not None
    run = client.get_run(run_id)
    assert run.data.tags["layerwise.diagnosis"] == "vanishing"
    with open(client.download_artifacts(run_id, "diagnosis.json", str(settings.home_dir))) as f:
        assert json.load(f)["verdict"] == "vanishing"
    plots = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert {"plots/grad_norm_heatmap.png", "plots/update_norms.png", "plots/loss_accuracy.png",
            "plots/activation_stats.png"} <= plots
    assert "activation/saturated_fraction" in run.data.metrics

    result, _, _ = _run(settings, residual)
    assert result["diagnosis"]["verdict"] == "healthy", result["diagnosis"]
    assert result["diagnosis"]["evidence"]["dead_fraction"] < 0.5
