"""The loss-curve checks on synthetic curves: for each rule, a curve that must be called and a
near miss that must not (workers/diagnostics/verdicts/curves.py)."""

from __future__ import annotations

import numpy as np

from services.contract.diagnostics_spec import DiagnosisThresholds
from workers.diagnostics.verdicts import Baseline, NormCurves, RunRecord, diagnose_record

LAYERS = ["layers.0", "output"]
PRIOR = Baseline("class_prior", 2.3, 0.1)  # ten balanced classes


def _norms(update_ratio: np.ndarray) -> NormCurves:
    """Gradient, update and weight norms per step, the update/weight ratio as given."""
    steps = len(update_ratio)
    weights = np.full((steps, len(LAYERS)), 10.0)
    updates = weights * update_ratio[:, None]
    grads = np.full((steps, len(LAYERS)), 0.5)
    keys = [f"{kind}/{layer}" for kind in ("grad_norm", "update_norm", "weight_norm")
            for layer in LAYERS] + ["grad_norm/total"]
    rows = np.column_stack([grads, updates, weights, np.sqrt((grads ** 2).sum(axis=1))])
    return NormCurves(keys, np.arange(steps), rows)


def _record(train, val=None, acc=None, *, update_ratio=None) -> RunRecord:
    epochs = []
    for i, loss in enumerate(train):
        row = {"train/loss": float(loss)}
        if val is not None:
            row["val/loss"] = float(val[i])
        if acc is not None:
            row["val/accuracy"] = float(acc[i])
        epochs.append(row)
    ratio = update_ratio if update_ratio is not None else np.full(100, 1e-3)
    return RunRecord(LAYERS, DiagnosisThresholds(), norms=_norms(ratio), epochs=epochs,
                     baseline=PRIOR)


def _verdict(record: RunRecord) -> str:
    return diagnose_record(record).verdict


# -- not_learning: stalled ----------------------------------------------------------------------
FROZEN_ACC = np.r_[0.35, np.full(9, 0.36)]  # a third of the gap closed, then nothing
FROZEN_LOSS = np.r_[2.1, np.full(9, 2.08)]


def test_a_run_whose_updates_collapsed_far_from_a_good_result_is_not_learning():
    decayed = np.r_[np.full(10, 6e-3), np.full(10, 6e-5), np.full(80, 1e-9)]
    diagnosis = diagnose_record(_record(FROZEN_LOSS, FROZEN_LOSS, FROZEN_ACC,
                                        update_ratio=decayed))
    assert diagnosis.verdict == "not_learning"
    assert diagnosis.findings[0].evidence["stalled"] is True
    assert diagnosis.findings[0].evidence["update_ratio_drop"] > 100


def test_a_plateau_whose_weights_still_move_or_a_good_result_is_not_stalled():
    decayed = np.r_[np.full(10, 6e-3), np.full(90, 1e-9)]
    # the same plateau, the weights still moving: not a stall, but a poor fit (gates)
    diagnosis = diagnose_record(_record(FROZEN_LOSS, FROZEN_LOSS, FROZEN_ACC))
    assert diagnosis.verdict == "not_learning"
    assert "stalled" not in diagnosis.findings[0].evidence
    assert diagnosis.findings[0].evidence["poor_fit"]
    # a schedule that decays to nothing once the run is good (96%) is healthy
    good = np.r_[0.9, np.full(9, 0.96)]
    assert _verdict(_record(np.r_[0.5, np.full(9, 0.1)], np.r_[0.5, np.full(9, 0.12)], good,
                            update_ratio=decayed)) == "healthy"


# -- slow ---------------------------------------------------------------------------------------
def test_a_run_still_climbing_steadily_far_from_the_goal_is_slow():
    acc = np.array([0.11, 0.12, 0.14, 0.16, 0.19, 0.22, 0.26, 0.30])  # ~20% of the gap
    loss = np.linspace(2.3, 2.1, 8)
    tiny = np.full(100, 1e-4)  # the lecture's slow training: steps of 1e-4 of the weights
    assert _verdict(_record(loss, loss, acc, update_ratio=tiny)) == "slow"
    # accuracy moving in steps on a small val set: the loss still falling at pace counts
    stepped = np.array([0.09, 0.13, 0.17, 0.20, 0.24, 0.26, 0.265, 0.28])
    assert _verdict(_record(loss, loss, stepped, update_ratio=tiny)) == "slow"


def test_the_same_climb_with_steps_of_a_usual_size_is_healthy_and_needs_more_epochs():
    acc = np.array([0.11, 0.12, 0.14, 0.16, 0.19, 0.22, 0.26, 0.30])
    loss = np.linspace(2.3, 2.1, 8)
    diagnosis = diagnose_record(_record(loss, loss, acc, update_ratio=np.full(100, 1e-2)))
    assert diagnosis.verdict == "healthy"
    # ~0.045 of the gap per epoch from 0.22: about 15 more epochs to close 90% of it
    assert 10 <= diagnosis.needs_more_epochs <= 25
    assert any(note.startswith("needs_more_epochs: ") for note in diagnosis.notes)


def test_a_run_that_levelled_off_or_is_nearly_there_is_not_slow():
    plateau = np.array([0.11, 0.2, 0.28, 0.33, 0.35, 0.35, 0.35, 0.35])
    flat_loss = np.r_[np.linspace(2.3, 2.0, 4), np.full(4, 2.0)]
    levelled = diagnose_record(_record(flat_loss, flat_loss, plateau))
    assert levelled.verdicts == ["not_learning"]  # a poor fit at 28% of the gap, not slow
    fast = np.linspace(0.1, 0.58, 8)  # past half the gap at a good pace
    assert _verdict(_record(np.linspace(2.3, 1.0, 8), np.linspace(2.3, 1.0, 8), fast)) \
        == "healthy"


# -- unstable: the val loss oscillating -----------------------------------------------------------
TRAIN_FALLING = np.linspace(0.5, 0.15, 15)
ACC = np.linspace(0.8, 0.93, 15)


def test_a_val_loss_going_up_and_down_is_unstable_not_overfitting():
    val = np.array([0.43, 0.30, 0.28, 0.38, 0.22, 0.21, 0.21, 0.27, 0.20, 0.17, 0.23, 0.30,
                    0.11, 0.19, 0.19])
    diagnosis = diagnose_record(_record(TRAIN_FALLING, val, 1.0 - val))  # the accuracy with it
    assert diagnosis.verdict == "unstable"
    assert diagnosis.findings[0].evidence["val_rise_share"] > 0.1


def test_one_noisy_val_epoch_is_not_unstable():
    val = np.r_[np.linspace(0.45, 0.15, 14), 0.2]  # one jump, at the end
    assert _verdict(_record(TRAIN_FALLING, val, ACC)) == "healthy"


# -- overfitting ----------------------------------------------------------------------------------
def test_a_steady_val_rise_while_train_falls_is_overfitting():
    epochs = 60
    train = np.geomspace(1.9, 1e-3, epochs)
    val = np.r_[np.linspace(1.2, 0.19, 15), np.linspace(0.19, 0.235, epochs - 15)]
    acc = np.r_[np.linspace(0.7, 0.95, 15), np.full(epochs - 15, 0.95)]
    assert _verdict(_record(train, val, acc)) == "overfitting"


def test_a_small_rise_at_a_tiny_val_loss_is_not_overfitting():
    # mlp-digits: 0.96 val accuracy, the val loss ends 10% above a small minimum of 0.122
    train = np.geomspace(1.8, 0.014, 15)
    val = np.array([1.23, 0.50, 0.31, 0.24, 0.22, 0.19, 0.17, 0.17, 0.15, 0.155, 0.159, 0.133,
                    0.122, 0.133, 0.135])
    acc = np.r_[np.linspace(0.69, 0.95, 9), np.full(6, 0.96)]
    assert _verdict(_record(train, val, acc)) == "healthy"
    # a rise of 0.01 over a converged loss of 0.001 (GRU at 100%): the baseline's scale floors it
    tiny = np.r_[np.geomspace(0.6, 0.001, 10), np.linspace(0.001, 0.011, 10)]
    assert _verdict(_record(np.geomspace(0.6, 1e-4, 20), tiny, np.full(20, 1.0))) == "healthy"
