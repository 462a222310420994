"""Causes in the order a user must act on them, and one cause at a time: overfitting ahead of
the symptoms it explains, vanishing through time for recurrent nets with a recurrent-cell
fix, and first fixes that change only the primary cause's settings, inside the rates their
optimizer is known to work in. Each rule has a near miss that must not fire. Plain data in,
a `Diagnosis` out (workers/diagnostics/verdicts/)."""

from __future__ import annotations

from typing import Any

import numpy as np

from services.contract.diagnostics_spec import DiagnosisThresholds
from services.contract.spec import ExperimentSpec
from tests.utils.specs import mlp_spec
from workers.diagnostics.verdicts import (
    Baseline,
    NormCurves,
    RunRecord,
    diagnose_record,
    fixes,
)
from workers.diagnostics.verdicts.remedies import KNOWN_LR

PRIOR = Baseline("class_prior", 2.3, 0.1)
UNIGRAM = Baseline("unigram", 3.0, None)  # a char-level language model's baseline loss
RNN_LAYERS = ["rnn.0.input", "rnn.0.recurrent", "head"]


def _norms(layers: list[str], rng: np.random.Generator, *, grads: list[float],
           update_ratio: float = 1e-2, steps: int = 100) -> NormCurves:
    """Gradient norms near `grads` per layer (seeded noise), updates of `update_ratio`."""
    g = np.asarray(grads) * rng.uniform(0.9, 1.1, size=(steps, len(layers)))
    keys = [f"{kind}/{layer}" for kind in ("grad_norm", "update_norm", "weight_norm")
            for layer in layers] + ["grad_norm/total"]
    rows = np.column_stack([g, np.full(g.shape, update_ratio), np.ones(g.shape),
                            np.sqrt((g ** 2).sum(axis=1))])
    return NormCurves(keys, np.arange(steps), rows)


def _epochs(train: np.ndarray, val: np.ndarray, acc: np.ndarray | None = None
            ) -> list[dict[str, float]]:
    rows = [{"train/loss": float(t), "val/loss": float(v)} for t, v in zip(train, val,
                                                                          strict=True)]
    for row, a in zip(rows, acc if acc is not None else [], strict=False):
        row["val/accuracy"] = float(a)
    return rows


def _spec(payload: dict[str, Any]) -> ExperimentSpec:
    return ExperimentSpec.model_validate(payload)


def _rnn_spec(cell: str = "vanilla", **model: Any) -> ExperimentSpec:
    return _spec({"name": "rnn", "project": "tests",
                  "data": {"name": "adding", "params": {"n": 200, "length": 60}},
                  "model": {"kind": "rnn", "cell": cell, "hidden": 16, **model},
                  "optimizer": {"name": "adam", "lr": 1e-3},
                  "training": {"epochs": 10, "batch_size": 32}})


# -- overfitting ahead of not_learning --------------------------------------------------------
def _memorizing(rng: np.random.Generator, *, val_end: float) -> RunRecord:
    """A char-level Transformer on a small text: train loss down to 0.07, val loss from its
    minimum (2.76) up to `val_end`, a little noise on both (seeded)."""
    epochs = 20
    train = np.geomspace(3.0, 0.07, epochs) * rng.uniform(0.98, 1.02, epochs)
    val = np.r_[np.linspace(3.0, 2.76, 5), np.linspace(2.76, val_end, epochs - 5)]
    val = val * rng.uniform(0.99, 1.01, epochs)
    layers = ["embedding", "blocks.0.attention", "blocks.0.mlp", "head"]
    spec = _spec({"name": "tx", "project": "tests", "data": {"name": "digits"},
                  "model": {"kind": "mlp", "hidden": [32, 32]},
                  "optimizer": {"name": "adam", "lr": 1e-3}, "training": {"epochs": epochs}})
    return RunRecord(layers, DiagnosisThresholds(), epochs=_epochs(train, val),
                     norms=_norms(layers, rng, grads=[0.3, 0.4, 0.5, 1.0]),
                     baseline=UNIGRAM, spec=spec)


def test_a_model_memorizing_its_training_split_is_overfitting_first():
    rng = np.random.default_rng(1)
    diagnosis = diagnose_record(_memorizing(rng, val_end=6.42))
    assert diagnosis.verdict == "overfitting", diagnosis.verdicts
    overfit = diagnosis.findings[0]
    assert overfit.evidence["train_far_below_val"] is True
    # the val loss ended worse than the unigram model: not_learning stays, but second
    assert "not_learning" in diagnosis.verdicts
    # the fix regularizes; no rate change rides along
    assert "optimizer.lr" not in overfit.fix
    assert any(k.startswith("regularization.") for k in overfit.fix)


def test_a_val_loss_that_stays_at_its_minimum_while_train_falls_is_not_overfitting():
    rng = np.random.default_rng(2)
    diagnosis = diagnose_record(_memorizing(rng, val_end=2.78))
    assert "overfitting" not in diagnosis.verdicts


def test_a_val_rise_within_the_curves_own_noise_is_not_overfitting():
    rng = np.random.default_rng(3)
    epochs = 30
    train = np.geomspace(2.3, 0.3, epochs)
    # converged at 0.5 with a noisy validation split (+-0.06): its last epochs a bit higher
    val = np.r_[np.linspace(2.3, 0.5, 10), np.full(epochs - 10, 0.5)]
    val = val + rng.normal(0, 0.06, epochs) + np.r_[np.zeros(epochs - 4), np.full(4, 0.06)]
    acc = np.r_[np.linspace(0.1, 0.85, 10), np.full(epochs - 10, 0.85)]
    record = RunRecord(["layers.0", "output"], DiagnosisThresholds(),
                       epochs=_epochs(train, val, acc),
                       norms=_norms(["layers.0", "output"], rng, grads=[0.5, 1.0]),
                       baseline=PRIOR, spec=_spec(mlp_spec()))
    assert diagnose_record(record).verdict == "healthy"


# -- vanishing through time ---------------------------------------------------------------------
def _rnn_record(rng: np.random.Generator, *, ratio: float | None, acc_end: float,
                spec: ExperimentSpec | None = None) -> RunRecord:
    """A recurrent net whose layers' gradients are even (the layer check sees nothing) and
    whose error reaches back through time by `ratio`."""
    epochs = 10
    acc = np.linspace(0.1, acc_end, epochs) + rng.normal(0, 0.003, epochs)
    loss = np.linspace(2.3, 2.3 - 2.0 * (acc_end - 0.1), epochs)
    return RunRecord(RNN_LAYERS, DiagnosisThresholds(), epochs=_epochs(loss, loss, acc),
                     norms=_norms(RNN_LAYERS, rng, grads=[0.4, 0.5, 1.0]),
                     baseline=PRIOR, spec=spec or _rnn_spec(), through_time_ratio=ratio)


def test_a_vanilla_rnn_whose_error_does_not_reach_back_is_vanishing_with_a_cell_fix():
    rng = np.random.default_rng(4)
    diagnosis = diagnose_record(_rnn_record(rng, ratio=1e-5, acc_end=0.3))
    assert diagnosis.verdict == "vanishing", diagnosis.verdicts
    finding = diagnosis.findings[0]
    assert finding.evidence["through_time_ratio"] == 1e-5
    assert finding.evidence["phase"] == "through_time"
    assert finding.fix == {"model.cell": "lstm"}  # one setting: the cell
    assert finding.alternatives[0] == {"model.cell": "gru"}
    assert diagnosis.evidence["through_time_ratio"] == 1e-5


def test_a_relu_vanilla_rnn_gets_the_gated_cell_with_tanh_so_the_spec_stays_valid():
    rng = np.random.default_rng(5)
    spec = _rnn_spec(activation="relu")
    diagnosis = diagnose_record(_rnn_record(rng, ratio=1e-6, acc_end=0.3, spec=spec))
    finding = diagnosis.findings[0]
    assert finding.fix == {"model.cell": "lstm", "model.activation": "tanh"}
    fixes.apply(spec, finding.fix)  # raises if invalid


def test_an_lstm_is_held_to_a_stricter_ratio_and_then_opens_its_forget_gate_wider():
    rng = np.random.default_rng(6)
    spec = _rnn_spec("lstm")
    # 1e-4: an LSTM still learning a 60-step memory sits there; its gates carry the error
    assert "vanishing" not in diagnose_record(
        _rnn_record(rng, ratio=1e-4, acc_end=0.3, spec=spec)).verdicts
    diagnosis = diagnose_record(_rnn_record(rng, ratio=1e-8, acc_end=0.3, spec=spec))
    assert diagnosis.verdict == "vanishing"
    assert diagnosis.findings[0].fix == {"model.cell": "gru"}
    assert {"model.forget_bias": 3.0} in diagnosis.findings[0].alternatives


def test_a_recurrent_net_that_learns_its_task_is_healthy_whatever_its_ratio():
    rng = np.random.default_rng(7)
    # a short memory is all the task needs: it learned
    assert diagnose_record(_rnn_record(rng, ratio=1e-5, acc_end=0.95)).verdict == "healthy"
    # the error reaches back: not vanishing (and not `slow`: steps of usual size)
    falling_short = diagnose_record(_rnn_record(rng, ratio=0.2, acc_end=0.3))
    assert "vanishing" not in falling_short.verdicts
    assert "slow" not in falling_short.verdicts


# -- one cause at a time, rates within their optimizer's range ---------------------------------
SIGMOID_10 = {"model": {"hidden": [32] * 10, "activation": "sigmoid"},
              "optimizer": {"name": "sgd", "lr": 0.1}}


def test_a_deep_sigmoid_nets_first_fix_changes_only_the_activation_and_its_init():
    rng = np.random.default_rng(8)
    layers = [f"layers.{i}" for i in range(10)] + ["output"]
    grads = list(np.geomspace(1e-6, 1.0, len(layers)))
    record = RunRecord(layers, DiagnosisThresholds(), spec=_spec(mlp_spec(**SIGMOID_10)),
                       norms=_norms(layers, rng, grads=grads),
                       epochs=_epochs(np.full(10, 2.3), np.full(10, 2.3), np.full(10, 0.1)),
                       baseline=PRIOR)
    diagnosis = diagnose_record(record)
    assert diagnosis.verdict == "vanishing"
    first = diagnosis.findings[0]
    assert first.fix == {"model.activation": "relu", "model.init": "he_normal"}
    for fix in [first.fix, *first.alternatives]:  # no remedy of exploding rides along
        assert "training.grad_clip_norm" not in fix
    assert len(first.alternatives) >= 2


def test_a_slow_adam_run_is_not_sent_outside_adams_rates():
    rng = np.random.default_rng(9)
    layers = ["layers.0", "output"]
    acc = np.linspace(0.1, 0.3, 8)
    loss = np.linspace(2.3, 2.1, 8)
    spec = _spec(mlp_spec(optimizer={"name": "adam", "lr": 5e-3}))
    record = RunRecord(layers, DiagnosisThresholds(), spec=spec, baseline=PRIOR,
                       epochs=_epochs(loss, loss, acc),
                       norms=_norms(layers, rng, grads=[0.5, 1.0], update_ratio=1e-4))
    diagnosis = diagnose_record(record)
    assert diagnosis.verdict == "slow"
    low, high = KNOWN_LR["adam"]
    for fix in [diagnosis.findings[0].fix, *diagnosis.findings[0].alternatives]:
        rate = fix.get("optimizer.lr")
        assert rate is None or low <= rate <= high, fix
    assert diagnosis.findings[0].fix == {"optimizer.lr": 1e-2}  # 3x, clamped at Adam's top


def test_an_adam_run_at_its_usual_rate_still_improving_is_unfinished_not_slow():
    rng = np.random.default_rng(10)
    layers = ["layers.0", "output"]
    acc = np.linspace(0.1, 0.4, 3)  # a 3-epoch run still improving fast
    loss = np.linspace(2.3, 1.7, 3)
    record = RunRecord(layers, DiagnosisThresholds(), spec=_spec(mlp_spec()), baseline=PRIOR,
                       epochs=_epochs(loss, loss, acc),
                       norms=_norms(layers, rng, grads=[0.5, 1.0], update_ratio=5e-3))
    diagnosis = diagnose_record(record)
    assert diagnosis.verdict == "healthy", diagnosis.verdicts
    assert diagnosis.needs_more_epochs is not None and diagnosis.needs_more_epochs >= 1


# -- a curve verdict needs more than the run's noise -------------------------------------------
def _two_val_rises(rng: np.random.Generator, train: np.ndarray) -> RunRecord:
    """A repaired deep sigmoid net, 94.7% accurate: its val loss falls but rises by a third in
    2 of 14 epochs (a small validation split)."""
    val = np.geomspace(2.3, 0.18, 15) * rng.uniform(0.99, 1.01, 15)
    val[5] *= 1.5
    val[10] *= 1.5
    acc = np.linspace(0.3, 0.947, 15)
    acc[[5, 10]] -= 0.12  # six val examples in fifty lost in those epochs
    return RunRecord(["layers.0", "output"], DiagnosisThresholds(), spec=_spec(mlp_spec()),
                     epochs=_epochs(train, val, acc), baseline=PRIOR,
                     norms=_norms(["layers.0", "output"], rng, grads=[0.5, 1.0]))


def test_two_rising_val_epochs_over_a_smooth_train_loss_are_noise_not_unstable():
    rng = np.random.default_rng(11)
    smooth = np.geomspace(2.3, 0.12, 15)
    diagnosis = diagnose_record(_two_val_rises(rng, smooth))
    assert diagnosis.verdict == "healthy", diagnosis.verdicts


def test_the_same_val_rises_with_the_train_loss_rising_too_are_unstable():
    rng = np.random.default_rng(12)
    wobbling = np.geomspace(2.3, 0.12, 15)
    wobbling[5] *= 1.3  # the steps overshoot: the epoch's own average goes up
    wobbling[10] *= 1.3
    diagnosis = diagnose_record(_two_val_rises(rng, wobbling))
    assert diagnosis.verdict == "unstable", diagnosis.verdicts
    assert diagnosis.findings[0].evidence["train_rises"] >= 2
