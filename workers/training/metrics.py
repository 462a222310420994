"""Epoch metrics: sums of per-example metrics on the device, their means as logged, and the
keys they are logged under.

`metric_keys` is the one place a split's keys are named: `summarize` names what it logs with
it, and the dry run (workers.submission.model_step) reads it to tell a submission which keys a
run will log, so the two cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

MetricSums = dict[str, torch.Tensor | float]

# The sum the loop adds to the training split's when a callback's penalty term is on (the
# weight and activity penalties), beside those of Objective.metrics.
PENALTY = "penalty"
# The sum every split has: the examples it covers, the denominator of every mean.
COUNT = "count"

# Metric sums (from Objective.metrics, plus the loop's penalty) and the names they get.
_PER_EXAMPLE = {"loss": "loss", "correct": "accuracy", "sq_error": "mse", PENALTY: "penalty"}


def metric_keys(split: str, sum_keys: Iterable[str], *, task: str | None = None) -> list[str]:
    """The keys (`train/loss`, `val/accuracy`, ...) a split's metrics are logged under, when
    its sums have `sum_keys`, in the order `summarize` gives them. A language model's loss
    also gives its perplexity."""
    keys = [f"{split}/{_PER_EXAMPLE.get(key, key)}" for key in sum_keys if key != COUNT]
    if task == "language_model":
        keys.append(f"{split}/perplexity")
    return keys


def accumulate(sums: MetricSums, batch: MetricSums) -> None:
    """Add a batch's metric sums into `sums`, on the device (no host sync)."""
    for key, value in batch.items():
        sums[key] = sums[key] + value if key in sums else value


def summarize(split: str, sums: MetricSums, *, task: str | None = None) -> dict[str, float]:
    """Per-example means of an epoch's metric sums, keyed by `metric_keys`.

    A language model's loss is the mean per-token NLL, so its perplexity is exp(loss).
    """
    host = {k: float(v) for k, v in sums.items()}  # one sync per split per epoch
    count = max(host.pop(COUNT, 1.0), 1.0)
    means = [value / count for value in host.values()]
    if task == "language_model":
        means.append(math.exp(min(means[list(host).index("loss")], 700.0)))
    return dict(zip(metric_keys(split, host, task=task), means, strict=True))
