"""Explicit regularizers of the lecture: weight penalties, activity penalties, constraints,
input corruption. Pure functions of tensors and modules, applied by the training loop."""

from __future__ import annotations

import torch
from torch import nn

REGULARIZERS = ["l1", "l2", "activity_l1", "activity_l2", "max_norm", "dropout",
                "input_noise_std", "early_stopping"]


def penalized_weights(model: nn.Module, *, include_biases: bool) -> list[nn.Parameter]:
    """The tensors a weight penalty covers: every weight matrix (dim >= 2), biases on request."""
    return [p for p in model.parameters()
            if p.requires_grad and (p.dim() >= 2 or include_biases)]


def weight_penalty(weights: list[nn.Parameter], *, l1: float, l2: float) -> torch.Tensor:
    """l1 * sum|W| + l2 * sum W^2, summed over `weights`."""
    total = weights[0].new_zeros(())
    if l1 > 0:
        total = total + l1 * sum(w.abs().sum() for w in weights)
    if l2 > 0:
        total = total + l2 * sum(w.square().sum() for w in weights)
    return total


def activity_penalty(hidden: list[torch.Tensor], *, l1: float, l2: float) -> torch.Tensor:
    """Penalty on hidden activations, averaged over the batch."""
    total = hidden[0].new_zeros(())
    for h in hidden:
        batch = h.shape[0]
        if l1 > 0:
            total = total + l1 * h.abs().sum() / batch
        if l2 > 0:
            total = total + l2 * h.square().sum() / batch
    return total


@torch.no_grad()
def apply_max_norm(model: nn.Module, max_norm: float) -> None:
    """Rescale each unit's incoming weight vector to norm <= max_norm (a constraint, applied
    after the optimizer step)."""
    for layer in model.modules():
        weight = getattr(layer, "weight", None)
        if isinstance(layer, nn.Linear | nn.Conv1d | nn.Conv2d) and weight is not None:
            rows = weight.view(weight.shape[0], -1)
            norms = rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
            rows.mul_(torch.clamp(max_norm / norms, max=1.0))


def gaussian_noise(x: torch.Tensor, std: float) -> torch.Tensor:
    return x + std * torch.randn_like(x)
