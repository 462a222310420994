"""Loss-curve checks, against the task's baseline where one is known.

progress      the share of the gap between the baseline and perfect that the run closed:
              accuracy (acc - base) / (1 - base) when both are known, else 1 - loss / base;
not_learning  the run ends with progress below `chance_fraction` (chance is never healthy);
slow          progress below `slow_progress` while still improving at a steady crawl (the last
              epochs' pace at least half the run's average: not a plateau), at a pace that
              would need more than `slow_factor` times the epochs run to close 90% of the gap;
unstable      the train loss rises by more than `unstable_rise` in more than
              `unstable_rise_fraction` of the epochs (oscillating), or exceeds `spike_factor`
              times its lowest value so far (spiking); both against the loss's level, floored
              at a tenth of the baseline's (or the first epoch's) loss;
overfitting   the val loss ends `overfitting_rise` above its minimum while the train loss kept
              falling and the gap between them widened (not called when early stopping
              restores the best epoch's weights: the model kept is not the overfit one);
diverged      a logged loss is not finite.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from workers.diagnostics.verdicts import fixes
from workers.diagnostics.verdicts.record import Finding, RunRecord, num

# Progress per epoch below which a curve counts as flat, not as improving slowly.
MIN_PACE = 1e-3


def progress_curve(record: RunRecord) -> tuple[str, np.ndarray] | None:
    """(metric, progress per epoch), from the validation metrics when the run has them."""
    base = record.baseline
    if base is None:
        return None
    split = "val" if record.curve("val/loss").size else "train"
    if not record.uses_gradients:
        split = "val"  # a non-gradient kind's train/loss is its own quantity (energy)
    accuracy = record.curve(f"{split}/accuracy")
    if base.accuracy is not None and base.accuracy < 1.0 and accuracy.size:
        return f"{split}/accuracy", (accuracy - base.accuracy) / (1.0 - base.accuracy)
    loss = record.curve(f"{split}/loss")
    if base.loss and base.loss > 0 and loss.size:
        return f"{split}/loss", 1.0 - loss / base.loss
    return None


def final_progress(record: RunRecord, metric: str, curve: np.ndarray) -> float:
    """The final model's progress (the best epoch's weights when early stopping restored them)."""
    value = record.final.get(metric)
    base = record.baseline
    if value is None or base is None:
        return float(curve[-1])
    if metric.endswith("accuracy") and base.accuracy is not None:
        return (float(value) - base.accuracy) / (1.0 - base.accuracy)
    return 1.0 - float(value) / base.loss if base.loss else float(curve[-1])


def curve_findings(record: RunRecord, evidence: dict[str, Any]) -> list[Finding]:
    t, spec, found = record.thresholds, record.spec, []
    train = record.curve("train/loss")
    if record.uses_gradients and train.size and not np.isfinite(train).all():
        found.append(Finding("diverged", {"train_loss": [num(v) for v in train[-3:]]}, [],
                             fixes.compose(spec, fixes.lr(spec, 0.1), fixes.clip(spec))
                             if spec else {}))
        return found
    measured = progress_curve(record)
    if measured is not None:
        metric, progress = measured
        end = final_progress(record, metric, progress)
        evidence["progress"] = {"metric": metric, "final": num(end),
                                "by_epoch": [num(v) for v in progress]}
        pace = _pace(progress)
        evidence["progress"]["pace_per_epoch"] = num(pace)
        if end < t.chance_fraction:
            found.append(Finding("not_learning", {"metric": metric, "progress": num(end),
                                                  "value": num(record.last(metric))}, [],
                                 _not_learning_fix(record, pace)))
        epochs_needed = (0.9 - end) / pace if pace > MIN_PACE else None
        # A crawl, not a plateau: the last epochs still gain at least half the run's
        # average pace (a curve that levelled off is as good as this setup gets).
        average = (progress[-1] - progress[0]) / max(1, len(progress) - 1)
        if (end < t.slow_progress and epochs_needed is not None and len(progress) >= 3
                and epochs_needed > t.slow_factor * len(progress) and pace >= 0.5 * average):
            found.append(Finding("slow", {"metric": metric, "progress": num(end),
                                          "pace_per_epoch": num(pace),
                                          "epochs_to_90_percent": num(epochs_needed)}, [],
                                 fixes.compose(spec, fixes.lr(spec, 10.0)) or
                                 fixes.compose(spec, fixes.adam(spec)) if spec else {}))
    if record.uses_gradients:
        found += _unstable(record, train)
        found += _overfitting(record, train)
    return found


def _pace(progress: np.ndarray) -> float:
    """Progress gained per epoch over the last third of the epochs (at least two)."""
    tail = progress[-max(2, len(progress) // 3):]
    if len(tail) < 2:
        return 0.0
    return float(np.polyfit(np.arange(len(tail)), tail, 1)[0])


def _not_learning_fix(record: RunRecord, pace: float) -> dict[str, Any]:
    """Without a measured cause, the learning rate: up when the run creeps forward or barely
    moves its weights, down otherwise."""
    spec = record.spec
    if spec is None:
        return {}
    ratios = _update_ratio(record)
    if pace > MIN_PACE or (ratios is not None and ratios < 1e-4):
        return fixes.compose(spec, fixes.lr(spec, 10.0)) or fixes.compose(spec, fixes.adam(spec))
    return fixes.compose(spec, fixes.lr(spec, 0.1))


def _update_ratio(record: RunRecord) -> float | None:
    history = record.history
    if history is None:
        return None
    updates = history.series("update_norm", record.layers)
    weights = history.series("weight_norm", record.layers)
    if updates is None or weights is None or not len(updates):
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = updates / weights
    return float(np.nanmedian(ratios)) if np.isfinite(ratios).any() else None


def _unstable(record: RunRecord, train: np.ndarray) -> list[Finding]:
    t, spec = record.thresholds, record.spec
    if len(train) < 4 or not np.isfinite(train).all():
        return []
    # Changes are measured against the loss's level, floored at a tenth of where it started:
    # a converged loss of 0.01 wobbling to 0.012 is noise, not a 20% rise.
    start = record.baseline.loss if record.baseline and record.baseline.loss else abs(train[0])
    level = np.maximum(np.abs(train[:-1]), max(0.1 * start, 1e-12))
    rise_share = float((np.diff(train) / level > t.unstable_rise).mean())
    running_min = np.minimum.accumulate(train)[:-1]
    floor = np.maximum(running_min, max(0.1 * start, 1e-12))
    spikes = np.flatnonzero(train[1:] - running_min > (t.spike_factor - 1) * floor) + 1
    if rise_share <= t.unstable_rise_fraction and not len(spikes):
        return []
    return [Finding("unstable", {"rise_share": num(rise_share),
                                 "spike_epochs": [int(i) + 1 for i in spikes]}, [],
                    fixes.compose(spec, fixes.lr(spec, 0.1)) if spec else {})]


def _overfitting(record: RunRecord, train: np.ndarray) -> list[Finding]:
    t, spec = record.thresholds, record.spec
    val = record.curve("val/loss")
    if len(val) < 4 or len(val) != len(train) or not np.isfinite(val).all():
        return []
    if spec is not None and spec.regularization.early_stopping.patience is not None \
            and spec.regularization.early_stopping.restore_best:
        return []
    best = int(np.argmin(val))
    rise = (val[-1] - val[best]) / max(abs(val[best]), 1e-12)
    gap_best, gap_end = val[best] - train[best], val[-1] - train[-1]
    if best == len(val) - 1 or rise <= t.overfitting_rise or train[-1] >= train[best] \
            or gap_end <= gap_best:
        return []
    return [Finding("overfitting", {"best_epoch": best + 1, "val_loss_rise": num(rise),
                                    "gap_at_best": num(gap_best), "gap_at_end": num(gap_end)},
                    [], fixes.compose(spec, fixes.dropout(spec), fixes.l2(spec),
                                      fixes.early_stopping(spec)) if spec else {})]
