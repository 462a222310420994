"""Weight initializers by name, applied per layer type.

glorot_normal uses the lecture's variance 2 / (fan_in + fan_out). Biases start at zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

InitName = Literal[
    "glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "orthogonal", "small_normal",
    "zeros", "default",
]

SMALL_NORMAL_STD = 0.01


def _fans(weight: torch.Tensor) -> tuple[int, int]:
    return nn.init._calculate_fan_in_and_fan_out(weight)


def _glorot_normal(w: torch.Tensor) -> None:
    fan_in, fan_out = _fans(w)
    nn.init.normal_(w, 0.0, math.sqrt(2.0 / (fan_in + fan_out)))


def _he_normal(w: torch.Tensor) -> None:
    nn.init.kaiming_normal_(w, nonlinearity="relu")


def _he_uniform(w: torch.Tensor) -> None:
    nn.init.kaiming_uniform_(w, nonlinearity="relu")


_INITIALIZERS: dict[str, Callable[[torch.Tensor], None]] = {
    "glorot_normal": _glorot_normal,
    "glorot_uniform": nn.init.xavier_uniform_,
    "he_normal": _he_normal,
    "he_uniform": _he_uniform,
    "orthogonal": nn.init.orthogonal_,
    "small_normal": lambda w: nn.init.normal_(w, 0.0, SMALL_NORMAL_STD),
    "zeros": nn.init.zeros_,
}

# Layer types whose `weight` is a fan-in x fan-out matrix (or a stack of them).
_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Bilinear)


def init_names() -> list[str]:
    return [*_INITIALIZERS, "default"]


@torch.no_grad()
def initialize(module: nn.Module, name: str) -> None:
    """Initialize every weight matrix below `module` with `name`; biases to zero.

    "default" keeps torch's own initialization.
    """
    if name == "default":
        return
    init = _INITIALIZERS[name]
    for layer in module.modules():
        if isinstance(layer, _WEIGHTED):
            init(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
