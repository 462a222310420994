"""The training epoch's metric sums, measured for several steps at once (StepMetrics), equal
those of the steps one by one: for classifiers, binary nets, regressions and language models,
with a smaller last batch, a step whose shape differs, and the element bound."""

from __future__ import annotations

import pytest
import torch

from models.objectives import Objective
from workers.training.metrics import MetricSums, StepMetrics, accumulate


def _batches(task: str, steps: int, generator: torch.Generator
             ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for i in range(steps):
        size = 7 if i == steps - 1 else 16  # the epoch's last batch is smaller
        if task == "classification":
            out.append((torch.randn(size, 5, generator=generator),
                        torch.randint(0, 5, (size,), generator=generator)))
        elif task == "binary":
            out.append((torch.randn(size, 1, generator=generator),
                        torch.randint(0, 2, (size, 1), generator=generator).float()))
        elif task == "regression":
            out.append((torch.randn(size, 3, generator=generator),
                        torch.randn(size, 3, generator=generator)))
        else:  # language_model: (B, T, V) scores of (B, T) tokens; T changes at step 2
            length = 4 if i < 2 else 6
            out.append((torch.randn(size, length, 11, generator=generator),
                        torch.randint(0, 11, (size, length), generator=generator)))
    return out


@pytest.mark.parametrize("task", ["classification", "binary", "regression", "language_model"])
@pytest.mark.parametrize("reuse_loss", [True, False])
@pytest.mark.parametrize("max_steps,max_elements", [(32, 1 << 22), (2, 1 << 22), (32, 100)])
def test_sums_at_once_equal_the_steps_one_by_one(task, reuse_loss, max_steps, max_elements):
    objective = Objective.resolve(task)
    batches = _batches(task, 5, torch.Generator().manual_seed(0))
    one_by_one: MetricSums = {}
    for z, y in batches:
        accumulate(one_by_one, objective.metrics(z, y, loss=objective.loss(z, y)
                                                 if reuse_loss else None))
    at_once: MetricSums = {}
    pending = StepMetrics(objective, reuse_loss=reuse_loss, max_steps=max_steps,
                          max_elements=max_elements)
    for z, y in batches:
        pending.add(at_once, z, y, objective.loss(z, y))
    pending.flush(at_once)
    assert list(at_once) == list(one_by_one)  # the keys in the order they are logged
    for key, value in one_by_one.items():
        assert float(at_once[key]) == pytest.approx(float(value), rel=1e-5), key


def test_nothing_waits_after_a_flush_and_a_second_flush_adds_nothing():
    objective = Objective.resolve("classification")
    z, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
    sums: MetricSums = {}
    pending = StepMetrics(objective, reuse_loss=True)
    pending.add(sums, z, y, objective.loss(z, y))
    assert sums == {}  # waiting: not measured yet
    pending.flush(sums)
    pending.flush(sums)
    assert float(sums["count"]) == 4.0
    assert float(sums["correct"]) == float((z.argmax(1) == y).sum())
