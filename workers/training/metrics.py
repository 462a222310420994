"""Epoch metrics: sums of per-example metrics on the device, and their means as logged."""

from __future__ import annotations

import math

import torch

MetricSums = dict[str, torch.Tensor | float]

# Metric sums (from Objective.metrics, plus the loop's "penalty") and the names they get.
_PER_EXAMPLE = {"loss": "loss", "correct": "accuracy", "sq_error": "mse", "penalty": "penalty"}


def accumulate(sums: MetricSums, batch: MetricSums) -> None:
    """Add a batch's metric sums into `sums`, on the device (no host sync)."""
    for key, value in batch.items():
        sums[key] = sums[key] + value if key in sums else value


def summarize(prefix: str, sums: MetricSums, *, task: str | None = None) -> dict[str, float]:
    """Per-example means of an epoch's metric sums, keyed as in MLflow (`train/loss`, ...).

    A language model's loss is the mean per-token NLL, so its perplexity is exp(loss).
    """
    host = {k: float(v) for k, v in sums.items()}  # one sync per split per epoch
    count = max(host.pop("count", 1.0), 1.0)
    out = {f"{prefix}/{_PER_EXAMPLE.get(key, key)}": value / count
           for key, value in host.items()}
    if task == "language_model":
        out[f"{prefix}/perplexity"] = math.exp(min(out[f"{prefix}/loss"], 700.0))
    return out
