"""Explicit regularizers of the lecture: weight penalties, activity penalties, constraints,
input corruption. Pure functions of tensors and modules, applied by the training loop the same
way to every model kind."""

from __future__ import annotations

import torch
from torch import nn

REGULARIZERS = ["l1", "l2", "activity_l1", "activity_l2", "max_norm", "unit_norm", "non_neg",
                "dropout", "input_noise_std", "input_flip_prob", "early_stopping"]


# -- weight and activity penalties ------------------------------------------------------------
def penalized_weights(model: nn.Module, *, include_biases: bool) -> list[nn.Parameter]:
    """The tensors a weight penalty covers: every trainable matrix (dim >= 2), and the biases
    (parameters named *bias*) on request. Other vectors (PReLU slopes, normalization gains,
    peepholes) are never penalized."""
    return [p for name, p in model.named_parameters()
            if p.requires_grad and (p.dim() >= 2 or include_biases and is_bias(name))]


def is_bias(name: str) -> bool:
    """bias, bias_ih_l0, in_proj_bias, layers.0.bias: a bias by its (last) name."""
    return "bias" in name.rsplit(".", 1)[-1]


def weight_penalty(weights: list[nn.Parameter], *, l1: float, l2: float) -> torch.Tensor:
    """The lecture's lambda * ||W||_p: l1 * sum |W| + l2 * sum W^2 over `weights`."""
    total = weights[0].new_zeros(())
    if l1 > 0:
        total = total + l1 * torch.stack([w.abs().sum() for w in weights]).sum()
    if l2 > 0:
        total = total + l2 * torch.stack([w.square().sum() for w in weights]).sum()
    return total


def activity_penalty(hidden: list[torch.Tensor], *, l1: float, l2: float) -> torch.Tensor:
    """l1 * sum |h| + l2 * sum h^2 over every hidden unit, averaged over the batch."""
    total = hidden[0].new_zeros(())
    for h in hidden:
        batch = h.shape[0]
        if l1 > 0:
            total = total + l1 * h.abs().sum() / batch
        if l2 > 0:
            total = total + l2 * h.square().sum() / batch
    return total


# -- constraints, applied after every optimizer step -----------------------------------------
_UNIT_ROWS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Bilinear)


def constrained_weights(model: nn.Module) -> list[torch.Tensor]:
    """Weights whose dim-0 slices are units' incoming weight vectors: the `weight` of dense,
    convolutional and bilinear layers, recurrent layers' weight_ih/weight_hh/weight_hr (one row
    per gate unit) and attention's in_proj_weight. Biases are never constrained."""
    out: list[torch.Tensor] = []
    for layer in model.modules():
        for name, param in layer.named_parameters(recurse=False):
            if param.dim() < 2 or not param.requires_grad:
                continue
            if (isinstance(layer, _UNIT_ROWS) and name == "weight"
                    or isinstance(layer, nn.RNNBase) and name.startswith("weight_")
                    or isinstance(layer, nn.MultiheadAttention) and name.endswith("proj_weight")):
                out.append(param)
    return out


@torch.no_grad()
def apply_constraints(weights: list[torch.Tensor], *, max_norm: float | None = None,
                      unit_norm: bool = False, non_neg: bool = False) -> None:
    """Project `weights` in place onto the constraint set: w >= 0 (non_neg), then each unit's
    incoming weight vector rescaled to norm <= max_norm, or to norm 1 (unit_norm)."""
    for weight in weights:
        if non_neg:
            weight.clamp_(min=0.0)
        if max_norm is None and not unit_norm:
            continue
        rows = weight.flatten(1)  # (units, fan_in), a view of the weight
        norms = rows.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (units, 1)
        scale = 1.0 / norms if unit_norm else torch.clamp(max_norm / norms, max=1.0)
        rows.mul_(scale)


# -- input corruption during training --------------------------------------------------------
def gaussian_noise(x: torch.Tensor, std: float) -> torch.Tensor:
    """x + N(0, std^2), drawn per element."""
    return x + std * torch.randn_like(x)


def binary_pivot(x: torch.Tensor) -> float | None:
    """1 for {0, 1} data, 0 for {-1, 1} data (a flip is then pivot - x), None for other data."""
    if not bool(((x == 0) | (x == 1) | (x == -1)).all()):
        return None
    has_minus = bool((x == -1).any())
    if has_minus and bool((x == 0).any()):
        return None  # three values: not binary
    return 0.0 if has_minus else 1.0


def bit_flip(x: torch.Tensor, prob: float, pivot: float) -> torch.Tensor:
    """Each element of binary `x` flipped to its other value with probability `prob`."""
    flips = torch.rand_like(x) < prob  # (B, ...) Bernoulli(prob) mask
    return torch.where(flips, pivot - x, x)
