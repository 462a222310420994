"""A split's metrics under the dropout inference rule, and the split itself."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from models.base import LayerwiseModel
from models.mc_dropout import mc_output
from models.objectives import Objective
from services.contract.regularization_spec import DropoutInferenceSpec
from workers.training.metrics import MetricSums, accumulate

EVAL_CHUNK = 4096


@dataclass
class Split:
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.x)


@torch.no_grad()
def evaluate(inference: DropoutInferenceSpec, seed: int, model: LayerwiseModel,
             objective: Objective, split: Split, device: torch.device) -> MetricSums:
    """Metric sums over `split` (device tensors), dropout at its inference rule: the expected
    activation, or the mean output of sampled masks (`dropout_inference.mode: mc`), drawn
    from `seed`."""
    samples = inference.samples if inference.mode == "mc" else 0
    model.eval()
    sums: MetricSums = {}
    with _fixed_masks(samples > 0, seed, device):
        for start in range(0, len(split), EVAL_CHUNK):
            x, y = split.x[start:start + EVAL_CHUNK], split.y[start:start + EVAL_CHUNK]
            z = mc_output(model, x, objective, samples) if samples else model(x)
            accumulate(sums, objective.metrics(z, y))
    return sums


@contextmanager
def _fixed_masks(sampled: bool, seed: int, device: torch.device) -> Iterator[None]:
    """MC evaluation draws the same masks every time from its own seed: the same weights
    give the same validation metrics, and training's random stream is not disturbed."""
    if not sampled:
        yield
        return
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield
