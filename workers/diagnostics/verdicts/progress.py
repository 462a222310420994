"""Where a run stands between its task's baseline and a perfect score, epoch by epoch, and how
fast it moves there: the one measure of the loss curve that the curve checks (not_learning,
slow, the stall) and the remedies (which way to move the learning rate) both read.

progress  the share of the gap between the baseline and perfect that the run closed:
          accuracy (acc - base) / (1 - base) when both are known (the validation split's
          first), else 1 - loss / base;
pace      progress gained per epoch over the last half of the epochs (at least three).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from workers.diagnostics.verdicts.baseline import Baseline

# Progress per epoch below which a curve counts as flat, not as improving slowly.
MIN_PACE = 1e-3


@dataclass(frozen=True)
class Progress:
    metric: str  # the epoch metric it was measured on (`val/accuracy`, `train/loss`, ...)
    by_epoch: np.ndarray
    final: float  # the final model's (the best epoch's when early stopping restored it)
    pace: float


def measure_progress(curve: Callable[[str], np.ndarray], baseline: Baseline | None,
                     final: Mapping[str, Any], *, uses_gradients: bool) -> Progress | None:
    """The run's progress from its epoch metrics (`curve(key)`), None without a baseline."""
    measured = _progress_curve(curve, baseline, uses_gradients=uses_gradients)
    if measured is None or baseline is None:
        return None
    metric, by_epoch = measured
    return Progress(metric, by_epoch, _final(baseline, final, metric, by_epoch), pace(by_epoch))


def _progress_curve(curve: Callable[[str], np.ndarray], base: Baseline | None, *,
                    uses_gradients: bool) -> tuple[str, np.ndarray] | None:
    """(metric, progress per epoch), from the validation metrics when the run has them."""
    if base is None:
        return None
    split = "val" if curve("val/loss").size else "train"
    if not uses_gradients:
        split = "val"  # a non-gradient kind's train/loss is its own quantity (energy)
    # Accuracy when the run logs it, the validation split's first: a loss that still falls
    # while the accuracy levelled off is a run at what it gets, not a crawl.
    for acc_split in dict.fromkeys(("val", split)):
        accuracy = curve(f"{acc_split}/accuracy")
        if base.accuracy is not None and base.accuracy < 1.0 and accuracy.size:
            return f"{acc_split}/accuracy", (accuracy - base.accuracy) / (1.0 - base.accuracy)
    loss = curve(f"{split}/loss")
    if base.loss and base.loss > 0 and loss.size:
        return f"{split}/loss", 1.0 - loss / base.loss
    return None


def _final(base: Baseline, final: Mapping[str, Any], metric: str, by_epoch: np.ndarray) -> float:
    """The final model's progress (the best epoch's weights when early stopping restored them)."""
    value = final.get(metric)
    if value is None:
        return float(by_epoch[-1])
    if metric.endswith("accuracy") and base.accuracy is not None:
        return (float(value) - base.accuracy) / (1.0 - base.accuracy)
    return 1.0 - float(value) / base.loss if base.loss else float(by_epoch[-1])


def pace(progress: np.ndarray) -> float:
    """Progress gained per epoch over the last half of the epochs (at least three when the run
    has them): a slope over two epochs is one epoch's noise on a small validation set."""
    tail = progress[-max(3, len(progress) // 2):]
    if len(tail) < 2:
        return 0.0
    return float(np.polyfit(np.arange(len(tail)), tail, 1)[0])
