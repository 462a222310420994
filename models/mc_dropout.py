"""Dropout at inference: the expected activation, or the average over sampled masks.

Training draws a Bernoulli mask per hidden unit. torch's inverted dropout scales the kept units
by 1 / (1 - p) during training, so the plain network at inference already gives the lecture's
expected activation z_j * p_j (p_j the keep probability): that is the `expected` mode.

The `mc` mode evaluates the network under K sampled masks and combines them, as the lecture's
"evaluate the network output for different dropouts & combine them": only the modules that
carry dropout are switched to sampling, so batch norm and the rest stay in inference mode.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from models.objectives import Objective


def dropout_carriers(model: nn.Module) -> list[nn.Module]:
    """Modules whose `training` flag only switches dropout on: dropout layers, and recurrent
    layers (between layers) and attention (on the weights) with a dropout rate above 0."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0
            or isinstance(m, nn.RNNBase | nn.MultiheadAttention) and m.dropout > 0]


@contextmanager
def sampling_masks(model: nn.Module) -> Iterator[None]:
    """Dropout draws masks inside the block, the rest of the model stays as it was."""
    carriers = [(m, m.training) for m in dropout_carriers(model)]
    for module, _ in carriers:
        module.train()
    try:
        yield
    finally:
        for module, was_training in carriers:
            module.train(was_training)


def mc_output(model: nn.Module, x: torch.Tensor, objective: Objective, samples: int
              ) -> torch.Tensor:
    """The pre-output z whose output equals the mean output over `samples` sampled masks.

    Outputs are averaged after the output function (probabilities for softmax and sigmoid,
    values for a linear output, votes for a hard limit) and mapped back to z, so the objective's
    loss and prediction read the average as they read any other z.
    """
    with sampling_masks(model):
        mean = torch.stack([objective.apply_output(model(x)) for _ in range(samples)]
                           ).mean(dim=0)  # (B, ..., out)
    return _as_pre_output(objective.output, mean)


def _as_pre_output(output: str, mean: torch.Tensor) -> torch.Tensor:
    if output == "softmax":
        return mean.clamp_min(1e-12).log()  # softmax(log p) = p when p sums to 1
    if output == "sigmoid":
        p = mean.clamp(1e-7, 1 - 1e-7)
        return p.log() - (-p).log1p()  # the logit: sigmoid(z) = p
    if output == "hardlimit":
        return mean - 0.5  # a majority vote of the sampled networks
    return mean
