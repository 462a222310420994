"""Loss-curve checks, against the task's baseline where one is known.

progress      the share of the gap between the baseline and perfect that the run closed:
              accuracy (acc - base) / (1 - base) when both are known (the validation split's
              first), else 1 - loss / base;
not_learning  the run ends with progress below `chance_fraction` (chance is never healthy), or
              it stalled: progress below `stall_progress`, flat over the last epochs, and its
              weights stopped moving (the median update/weight ratio over the last third of the
              steps fell more than `stall_update_drop` times below the early phase's);
slow          the lecture's slow training: the steps barely move the weights (the median
              update/weight ratio below `SLOW_UPDATE_RATIO`), and so the run, still improving
              at a steady crawl (the pace over the last half of the epochs at least half the
              run's average, of the accuracy or, as accuracy moves in steps on a small
              validation set, of the loss: not a plateau), ends below `slow_progress` at a
              pace that would need more than `slow_factor` times the epochs run to close 90%
              of the gap;
unfinished    the same crawl with steps of a usual size is a run that needs more epochs, not a
              problem: no finding, the estimate `needs_more_epochs` in the evidence (the
              engine's note; none beyond `MAX_MORE_FACTOR` times the epochs run); a run still
              near its baseline stays `not_learning` (chance is never healthy), its finding
              carrying the estimate, which its fix then uses;
unstable      the train loss rises by more than `unstable_rise` in more than
              `unstable_rise_fraction` of the epochs (oscillating), or exceeds `spike_factor`
              times its lowest value so far (spiking), or the val loss rises by more than
              `unstable_val_rise` in more than `unstable_val_rise_fraction` of the epochs (and
              at least twice) while the train loss rose by more than `unstable_rise` in at
              least `MIN_TRAIN_RISES` epochs too (the train loss averages a whole epoch's
              steps, so its rises are the run's own overshoot), or, over a smooth train loss,
              in at least `MIN_VAL_RISES_ALONE` epochs: a few val rises over a smooth train
              loss are the validation split's sampling noise (two of fourteen epochs on a
              repaired sigmoid net, 94.7% accurate, are not instability); all against the
              loss's level, floored at a tenth of the baseline's (or the first epoch's) loss;
overfitting   the val loss, smoothed over a tenth of the epochs (at least 3), ends
              `overfitting_rise` above its minimum, measured against that minimum floored at
              `overfitting_floor` times the baseline's loss, while the (smoothed) train loss
              kept falling and the gap between them widened, and the rise is larger than
              `NOISE_FACTOR` times the val curve's own noise (`curve_noise`, from its
              epochs' second differences), as the gap at the end must be (a val loss
              within its noise of the train loss generalizes as well as it fits); not called
              when early stopping restores
              the best epoch's weights: the model kept is not the overfit one. The evidence
              says when the train loss ended far below the val loss (`train_far_below_val`:
              under `FAR_BELOW` times it): the engine then puts overfitting first;
diverged      a logged loss is not finite.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from services.contract.verdicts import Verdict
from workers.diagnostics.verdicts.progress import MIN_PACE, pace
from workers.diagnostics.verdicts.record import Finding, RunRecord, num

# The median ||dW|| / ||W|| under which steps barely move the weights: the lecture's slow
# training (the pathology suite's slow runs step at ~1e-4..1e-3 of their weights, healthy
# ones at 1e-3 and more under SGD).
SLOW_UPDATE_RATIO = 1e-3
MIN_TRAIN_RISES = 2  # train-loss rises that corroborate a val loss's as the run's own
MIN_VAL_RISES_ALONE = 4  # val-loss rises that are the run's own over a smooth train loss
NOISE_FACTOR = 3.0  # a curve verdict's change must exceed this many times the curve's noise
FAR_BELOW = 0.5  # the train loss under this share of the val loss: the model memorizes
TARGET = 0.9  # `needs_more_epochs` estimates the epochs to close this share of the gap
# An estimate beyond this many times the epochs run is no estimate: the run is not on its way.
MAX_MORE_FACTOR = 10


def curve_findings(record: RunRecord, evidence: dict[str, Any]) -> list[Finding]:
    t, found = record.thresholds, []
    train = record.curve("train/loss")
    if record.uses_gradients and train.size and not np.isfinite(train).all():
        found.append(Finding(Verdict.DIVERGED, {"train_loss": [num(v) for v in train[-3:]]}))
        return found
    progress = record.progress
    if progress is not None:
        metric, by_epoch, end = progress.metric, progress.by_epoch, progress.final
        evidence["progress"] = {"metric": metric, "final": num(end),
                                "by_epoch": [num(v) for v in by_epoch]}
        evidence["progress"]["pace_per_epoch"] = num(progress.pace)
        stall = _stall(record, end, progress.pace)
        if stall is not None:
            evidence["update_ratio_drop"] = num(stall)
        if end < t.chance_fraction or stall is not None:
            found.append(Finding(Verdict.NOT_LEARNING, {
                "metric": metric, "progress": num(end), "value": num(record.last(metric)),
                **({"stalled": True, "update_ratio_drop": num(stall)}
                   if stall is not None else {})}))
        epochs_needed = (TARGET - end) / progress.pace \
            if progress.pace > MIN_PACE and end < TARGET else None
        improving = epochs_needed is not None and len(by_epoch) >= 3 \
            and _still_improving(record, metric, by_epoch)
        ratio = record.update_ratio
        tiny_steps = ratio is not None and ratio < SLOW_UPDATE_RATIO
        if (improving and tiny_steps and end < t.slow_progress and epochs_needed is not None
                and epochs_needed > t.slow_factor * len(by_epoch)):
            found.append(Finding(Verdict.SLOW, {"metric": metric, "progress": num(end),
                                                "pace_per_epoch": num(progress.pace),
                                                "epochs_to_90_percent": num(epochs_needed),
                                                "update_weight_ratio": num(ratio)}))
        elif improving and epochs_needed is not None:
            # Unfinished: the epochs still to come are counted in (a live judgement's run
            # has them ahead of it).
            ahead = max(0, (record.total_epochs or len(by_epoch)) - len(by_epoch))
            more = int(np.ceil(epochs_needed)) - ahead
            # On its way: the epochs it needs are in reach (ahead of a live run, or a few
            # more): the poor-fit line (gates) does not call it not_learning.
            evidence["progress"]["on_its_way"] = more <= MAX_MORE_FACTOR * len(by_epoch)
            if 0 < more <= MAX_MORE_FACTOR * len(by_epoch):
                evidence["needs_more_epochs"] = more
                # Near its baseline but on its way there: more epochs are its fix, not a rate.
                for finding in found:
                    if finding.verdict == Verdict.NOT_LEARNING and stall is None:
                        finding.evidence["needs_more_epochs"] = more
    if record.uses_gradients:
        found += _unstable(record, train)
        found += _overfitting(record, train)
    return found


def _still_improving(record: RunRecord, metric: str, progress: np.ndarray) -> bool:
    """A crawl, not a plateau: the last epochs still gain at least half the run's average
    pace (a curve that levelled off is as good as this setup gets). Accuracy moves in steps
    on a small validation set, so a loss that still falls at that pace counts too."""
    curves = [progress]
    base = record.baseline
    loss = record.curve(f"{metric.split('/')[0]}/loss")
    if metric.endswith("accuracy") and base is not None and base.loss and len(loss) >= 3:
        curves.append(1.0 - loss / base.loss)
    for curve in curves:
        average = (curve[-1] - curve[0]) / max(1, len(curve) - 1)
        gained = pace(curve)
        if gained > 0 and gained >= 0.5 * average:
            return True
    return False


def _stall(record: RunRecord, end: float, pace: float) -> float | None:
    """How many times the update/weight ratio fell, when the run stalled: it ends far from a
    good result (progress below `stall_progress`), flat (no measurable pace), and its weights
    stopped moving (a decayed learning rate, a collapsed optimizer): the median over the
    layers of ||dW|| / ||W||, over the last third of the logged steps, is more than
    `stall_update_drop` times below its median over the first `early_fraction`. A run that
    levelled off with its weights still moving is at what this setup gets, not stalled."""
    t = record.thresholds
    if end >= t.stall_progress or pace > MIN_PACE:
        return None
    ratios = _step_update_ratios(record)
    if ratios is None or len(ratios) < 3:
        return None
    early = float(np.median(ratios[:max(1, int(np.ceil(len(ratios) * t.early_fraction)))]))
    late = float(np.median(ratios[-max(1, len(ratios) // 3):]))
    if not early > 0:
        return None
    drop = early / late if late > 0 else float("inf")
    return drop if drop > t.stall_update_drop else None


def _step_update_ratios(record: RunRecord) -> np.ndarray | None:
    """The median over the layers of ||dW|| / ||W|| at each logged step (finite steps only)."""
    ratios = record.update_ratios
    if ratios is None:
        return None
    finite = np.isfinite(ratios).all(axis=1)
    return np.median(ratios[finite], axis=1) if finite.any() else None


def _unstable(record: RunRecord, train: np.ndarray) -> list[Finding]:
    t = record.thresholds
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
    # The val loss goes up and down too when the steps overshoot (the train loss, an average
    # over the epoch's steps, smooths that out); its rises must be larger than the train
    # loss's to count, a small validation set being noisier.
    val = record.curve("val/loss")
    val_rises = 0
    if len(val) >= 4 and np.isfinite(val).all():
        val_level = np.maximum(np.abs(val[:-1]), max(0.1 * start, 1e-12))
        val_rises = int((np.diff(val) / val_level > t.unstable_val_rise).sum())
    val_share = val_rises / max(1, len(val) - 1)
    train_rises = int((np.diff(train) / level > t.unstable_rise).sum())
    val_oscillates = val_rises >= 2 and val_share > t.unstable_val_rise_fraction \
        and (train_rises >= MIN_TRAIN_RISES or val_rises >= MIN_VAL_RISES_ALONE)
    if rise_share <= t.unstable_rise_fraction and not len(spikes) and not val_oscillates:
        return []
    return [Finding(Verdict.UNSTABLE, {"rise_share": num(rise_share),
                                       "val_rise_share": num(val_share),
                                       "train_rises": train_rises,
                                       "spike_epochs": [int(i) + 1 for i in spikes]})]


def curve_noise(curve: np.ndarray) -> float:
    """The curve's own noise, as a standard deviation of its epoch values: from their second
    differences (v[i+1] - 2 v[i] + v[i-1], of variance 6 sigma^2 for independent noise), by
    their median absolute value so that a trend, falling or rising, and the steep first
    epochs leave it near 0 while a small validation set's wobble does not."""
    if len(curve) < 3:
        return 0.0
    second = np.diff(curve, 2)
    return float(1.4826 * np.median(np.abs(second - np.median(second))) / np.sqrt(6.0))


def _smooth(curve: np.ndarray, window: int) -> np.ndarray:
    """The trailing mean over `window` epochs (one value per full window)."""
    return np.convolve(curve, np.ones(window) / window, mode="valid")


def _overfitting(record: RunRecord, train: np.ndarray) -> list[Finding]:
    t, spec = record.thresholds, record.spec
    val = record.curve("val/loss")
    if len(val) < 4 or len(val) != len(train) or not np.isfinite(val).all():
        return []
    if spec is not None and spec.regularization.early_stopping.patience is not None \
            and spec.regularization.early_stopping.restore_best:
        return []
    # Smoothed over a tenth of the epochs (at least 3): a rise that one noisy epoch makes, or
    # a val loss that goes up and down, is not the steady climb of a model fitting its noise.
    window = max(3, len(val) // 10)
    val_s, train_s = _smooth(val, window), _smooth(train, window)
    best = int(np.argmin(val_s))
    # Against the minimum, floored at a share of the baseline's loss: a val loss converged near
    # 0 (0.001 -> 0.01 on a task whose baseline is 0.69) is not a rise that matters.
    start = record.baseline.loss if record.baseline and record.baseline.loss else abs(val[0])
    scale = max(abs(val_s[best]), t.overfitting_floor * start, 1e-12)
    rise = (val_s[-1] - val_s[best]) / scale
    gap_best, gap_end = val_s[best] - train_s[best], val_s[-1] - train_s[-1]
    # Against the raw curve's noise: the smoothed minimum is itself the lowest of many noisy
    # means, biased low by about twice their noise, so a rise of a smoothed curve's few noise
    # widths is what noise alone makes.
    noise = curve_noise(val)
    # And the val loss must end above the train loss by more than that noise: within it, the
    # model generalizes as well as it fits (a noisy SGD run whose val loss went up and down).
    if best == len(val_s) - 1 or rise <= t.overfitting_rise or train_s[-1] >= train_s[best] \
            or gap_end <= gap_best or val_s[-1] - val_s[best] <= NOISE_FACTOR * noise \
            or gap_end <= NOISE_FACTOR * noise:
        return []
    best += window - 1  # the smoothed value's last epoch
    return [Finding(Verdict.OVERFITTING, {
        "best_epoch": best + 1, "val_loss_rise": num(rise), "gap_at_best": num(gap_best),
        "gap_at_end": num(gap_end), "val_noise": num(noise),
        "train_loss_end": num(train_s[-1]), "val_loss_end": num(val_s[-1]),
        "train_far_below_val": bool(train_s[-1] < FAR_BELOW * val_s[-1])})]
