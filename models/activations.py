"""The activation functions of the lecture's table, by name."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class BinaryStep(nn.Module):
    """Heaviside step: 1 where x > 0. Its derivative is zero almost everywhere, which is the
    lecture's point about why gradient descent cannot train it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # `0 * x` keeps the graph: the gradient is a true zero, not missing.
        return (x > 0).to(x.dtype) + 0 * x


class ArcTan(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.atan(x)


_FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "identity": nn.Identity,
    "step": BinaryStep,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "arctan": ArcTan,
    "relu": nn.ReLU,
    "prelu": nn.PReLU,  # one learned slope per layer
    "elu": nn.ELU,
    "softplus": nn.Softplus,
}

# Units "saturate" where the derivative is near zero: used by the diagnostics.
SATURATING = {"sigmoid", "tanh", "arctan", "step"}


def make_activation(name: str) -> nn.Module:
    try:
        return _FACTORIES[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(_FACTORIES)}") from None


def activation_names() -> list[str]:
    return list(_FACTORIES)
