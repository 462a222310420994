"""Epoch metrics: sums of per-example metrics on the device, their means as logged, and the
keys they are logged under.

`metric_keys` is the one place a split's keys are named: `summarize` names what it logs with
it, and the dry run (workers.submission.model_step) reads it to tell a submission which keys a
run will log, so the two cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

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


class StepMetrics:
    """A training epoch's per-step metric sums, computed for several steps at once.

    `Objective.metrics` after every step is a handful of kernels (argmax, compare, sums) that
    cost a small model's loop about 3.5% (BENCHMARKS.md, row 1e); here the steps' outputs wait
    (detached, bounded by `max_steps` and `max_elements`) and are measured in one call. The sums
    are those of the steps one by one, up to the order of the additions."""

    def __init__(self, objective: Any, *, reuse_loss: bool, max_steps: int = 32,
                 max_elements: int = 1 << 22):
        self.objective, self.reuse_loss = objective, reuse_loss
        self.max_steps, self.max_elements = max_steps, max_elements
        self._outputs: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []
        self._losses: list[torch.Tensor] = []
        self._counts: list[float] = []
        self._elements = 0

    def add(self, sums: MetricSums, output: torch.Tensor, y: torch.Tensor,
            loss: torch.Tensor) -> None:
        """One step's detached output, targets and mean loss; measured into `sums` when the
        pending steps are full (or this step's shape differs from theirs)."""
        if self._outputs and (output.shape[1:] != self._outputs[0].shape[1:]
                              or y.shape[1:] != self._targets[0].shape[1:]):
            self.flush(sums)
        self._outputs.append(output)
        self._targets.append(y)
        self._losses.append(loss)
        self._counts.append(float(y.shape[0]))
        self._elements += output.numel()
        if len(self._outputs) >= self.max_steps or self._elements >= self.max_elements:
            self.flush(sums)

    def flush(self, sums: MetricSums) -> None:
        if not self._outputs:
            return
        if len(self._outputs) == 1:
            z, y, counts = self._outputs[0], self._targets[0], self._counts[0]
        else:
            z, y, counts = torch.cat(self._outputs), torch.cat(self._targets), sum(self._counts)
        mean = None
        if self.reuse_loss:  # the steps' mean losses, weighted by their examples
            mean = (self._losses[0] if len(self._losses) == 1 else
                    torch.stack(self._losses) @ torch.tensor(self._counts, dtype=self._losses[
                        0].dtype, device=self._losses[0].device) / counts)
        accumulate(sums, self.objective.metrics(z, y, loss=mean))
        self._outputs, self._targets, self._losses, self._counts = [], [], [], []
        self._elements = 0
