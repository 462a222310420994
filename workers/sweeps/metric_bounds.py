"""The range a sweep's metric can take, so that an interval of its mean never reaches past it
(an accuracy's 95% interval ends at 1.0, however few the seeds)."""

from __future__ import annotations

import math

Bounds = tuple[float | None, float | None]
# Kinds whose loss is an energy: it may be negative.
ENERGY_LOSS_KINDS = frozenset({"hopfield"})


def metric_bounds(metric: str, *, model_kind: str | None = None) -> Bounds:
    """(lowest, highest) the metric can take; None where it is unbounded.

    Accuracies and fractions lie in [0, 1]; perplexities are >= 1; squared errors, errors and
    losses are >= 0, except the loss of a kind whose loss is an energy (hopfield)."""
    leaf = metric.rsplit("/", 1)[-1]
    if leaf.endswith(("accuracy", "fraction")):
        return 0.0, 1.0
    if leaf.endswith("perplexity"):
        return 1.0, None
    if leaf.endswith(("mse", "error")):
        return 0.0, None
    if leaf.endswith("loss") and model_kind not in ENERGY_LOSS_KINDS:
        return 0.0, None
    return None, None


def clip(value: float, bounds: Bounds) -> float:
    low, high = bounds
    if math.isnan(value):
        return value
    if low is not None:
        value = max(low, value)
    if high is not None:
        value = min(high, value)
    return value


def clip_interval(interval: tuple[float, float], bounds: Bounds) -> list[float]:
    """An interval cut to the metric's range: [low, high] within bounds."""
    return [clip(interval[0], bounds), clip(interval[1], bounds)]
