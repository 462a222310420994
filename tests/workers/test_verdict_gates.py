"""The result's two lines (workers/diagnostics/verdicts/gates.py): a good fit is healthy unless
a hard fault holds, a poor fit is not healthy unless it is still improving; each with its near
miss on the other side of the line."""

from __future__ import annotations

import numpy as np

from services.contract.diagnostics_spec import DiagnosisThresholds
from services.contract.verdicts import Verdict
from workers.diagnostics.verdicts import Baseline, NormCurves, RunRecord, diagnose_record
from workers.diagnostics.verdicts.gates import GOOD_FIT, POOR_FIT

LAYERS = ["layers.0", "output"]
BINARY = Baseline("class_prior", 0.69, 0.5)  # two balanced classes
MEAN = Baseline("mean_predictor", 0.414, None)  # a regression's mean predictor


def _norms(steps: int = 100) -> NormCurves:
    """Healthy gradients, each step moving the weights by 1% of their norm."""
    weights = np.full((steps, len(LAYERS)), 10.0)
    grads = np.full((steps, len(LAYERS)), 0.5)
    keys = [f"{kind}/{layer}" for kind in ("grad_norm", "update_norm", "weight_norm")
            for layer in LAYERS] + ["grad_norm/total"]
    rows = np.column_stack([grads, weights * 1e-2, weights, np.sqrt((grads ** 2).sum(axis=1))])
    return NormCurves(keys, np.arange(steps), rows)


def _record(train, val, *, acc=None, train_acc=None, baseline=BINARY,
            activations=None) -> RunRecord:
    epochs = []
    for i, loss in enumerate(train):
        row = {"train/loss": float(loss), "val/loss": float(val[i])}
        if acc is not None:
            row["val/accuracy"] = float(acc[i])
        if train_acc is not None:
            row["train/accuracy"] = float(train_acc[i])
        epochs.append(row)
    return RunRecord(LAYERS, DiagnosisThresholds(), norms=_norms(), epochs=epochs,
                     baseline=baseline, activations=activations or {})


# A circle classifier at ~99% (autotrainer-circle fixed): its train loss of ~0.05 wobbles up
# in a third of the epochs, as its val loss of 0.02 does, while the accuracy stays ~0.98-1.0.
WOBBLE_TRAIN = np.r_[np.geomspace(0.6, 0.06, 8),
                     np.tile([0.05, 0.058, 0.049, 0.057], 3)]
WOBBLE_VAL = np.r_[np.geomspace(0.55, 0.03, 8), np.tile([0.02, 0.04, 0.019, 0.04], 3)]
HIGH_ACC = np.r_[np.linspace(0.6, 0.97, 8), np.tile([0.99, 0.983, 1.0, 0.983], 3)]


def test_a_noisy_tiny_loss_at_99_percent_is_healthy_with_a_note():
    diagnosis = diagnose_record(_record(WOBBLE_TRAIN, WOBBLE_VAL, acc=HIGH_ACC))
    assert diagnosis.verdict == Verdict.HEALTHY
    assert diagnosis.findings == []
    assert any(note.startswith("unstable seen") for note in diagnosis.notes)


def test_near_miss_the_same_wobble_that_costs_accuracy_is_unstable():
    # the suite's SGD runs at a high rate: the val accuracy swings by a tenth of the gap
    swinging = np.r_[np.linspace(0.6, 0.95, 8), np.tile([0.89, 0.97, 0.88, 0.97], 3)]
    diagnosis = diagnose_record(_record(WOBBLE_TRAIN, WOBBLE_VAL, acc=swinging))
    assert diagnosis.verdict == Verdict.UNSTABLE
    assert diagnosis.findings[0].evidence["late_progress_swing"] > 0.07


SATURATED = {"activation/saturated_fraction": 0.55,
             "activation/saturated_fraction/layers.0.activation": 0.55}
FALLING = np.geomspace(0.6, 0.05, 20)
VAL_FALLING = np.geomspace(0.6, 0.07, 20)


def test_saturated_units_at_a_good_fit_are_a_note_not_the_verdict():
    acc = np.linspace(0.7, 0.97, 20)  # 94% of the way from 0.5 to 1.0
    diagnosis = diagnose_record(_record(FALLING, VAL_FALLING, acc=acc, activations=SATURATED))
    assert diagnosis.verdict == Verdict.HEALTHY
    assert diagnosis.evidence["saturated"]["saturated_fraction"] == 0.55  # still measured
    assert any(note.startswith("saturated seen") for note in diagnosis.notes)


def test_near_miss_an_accurate_classifier_with_a_loss_worse_than_its_prior_is_not_a_good_fit():
    # unscaled inputs blow up the logits: 97% accurate at a val loss of 24 (the prior: 0.69)
    acc = np.linspace(0.7, 0.97, 20)
    diagnosis = diagnose_record(_record(FALLING * 40, VAL_FALLING * 400, acc=acc,
                                        activations=SATURATED))
    assert diagnosis.verdict == Verdict.SATURATED


def test_near_miss_saturated_units_below_the_good_fit_stay_the_verdict():
    acc = np.linspace(0.6, 0.5 + 0.5 * (GOOD_FIT - 0.05), 20)  # just under the line
    diagnosis = diagnose_record(_record(FALLING, VAL_FALLING, acc=acc, activations=SATURATED))
    assert diagnosis.verdict == Verdict.SATURATED


# A model memorizing a small training split: 100% train accuracy, 93% val accuracy on a
# balanced binary task, its val loss risen from its minimum while the train loss fell.
MEMO_TRAIN = np.geomspace(0.6, 1e-3, 40)
MEMO_VAL = np.r_[np.linspace(0.6, 0.2, 12), np.linspace(0.2, 0.32, 28)]


def test_a_clear_overfit_stays_the_verdict_at_a_good_fit():
    acc = np.r_[np.linspace(0.6, 0.93, 12), np.full(28, 0.93)]
    diagnosis = diagnose_record(_record(MEMO_TRAIN, MEMO_VAL, acc=acc,
                                        train_acc=np.linspace(0.6, 1.0, 40)))
    assert diagnosis.verdict == Verdict.OVERFITTING
    assert diagnosis.findings[0].evidence["train_progress"] == 1.0


def test_near_miss_a_val_loss_rise_with_the_accuracies_together_is_healthy():
    # the val loss rises (a model growing confident) but the val accuracy keeps up with the
    # train accuracy: not a clear overfit at 98%
    acc = np.r_[np.linspace(0.6, 0.98, 12), np.full(28, 0.98)]
    diagnosis = diagnose_record(_record(MEMO_TRAIN, MEMO_VAL, acc=acc,
                                        train_acc=np.r_[np.linspace(0.6, 0.985, 12),
                                                        np.full(28, 0.985)]))
    assert diagnosis.verdict == Verdict.HEALTHY
    assert any(note.startswith("overfitting seen") for note in diagnosis.notes)


# A regression that levelled off a third of the way from the mean predictor to perfect
# (deepfd-48251943 buggy: val loss 0.277 against the mean predictor's 0.414).
LEVELLED = np.r_[np.linspace(0.6, 0.28, 10), np.full(20, 0.277)]


def test_a_regression_that_levelled_off_a_third_of_the_way_is_not_learning():
    diagnosis = diagnose_record(_record(LEVELLED + 0.003, LEVELLED, baseline=MEAN))
    assert diagnosis.verdict == Verdict.NOT_LEARNING
    evidence = diagnosis.findings[0].evidence
    assert evidence["poor_fit"] == POOR_FIT and 0.3 < evidence["progress"] < 0.4


def test_near_miss_a_fair_fit_or_a_poor_one_still_improving_is_healthy():
    fair = np.r_[np.linspace(0.6, 0.19, 10), np.full(20, 0.187)]  # 55% of the way
    assert diagnose_record(_record(fair + 0.003, fair, baseline=MEAN)).verdict == "healthy"
    # a third of the way but still falling at a steady pace: it needs more epochs
    climbing = np.linspace(0.41, 0.27, 10)
    diagnosis = diagnose_record(_record(climbing + 0.003, climbing, baseline=MEAN))
    assert diagnosis.verdict == Verdict.HEALTHY
    assert diagnosis.needs_more_epochs is not None
