"""The dense layer that linear models, MLPs and residual MLPs are made of."""

from __future__ import annotations

import torch
from torch import nn

from models.activations import make_activation


class DenseLayer(nn.Linear):
    """y = dropout(f(W x + b)) [+ skip(x)].

    The skip is the identity when widths match and a learned matrix W^(l-1,l) when they do
    not (or when `weighted_skip` asks for one), so a residual net of any widths can be built.

    Dropout is the lecture's Bernoulli mask m_j on each hidden unit during training, inverted
    (kept units scaled by 1 / (1 - p)), so at inference the plain unit is already the expected
    activation. `units(x)` gives the activations f(W x + b) before the mask: what activity
    penalties and unit statistics look at.
    """

    def __init__(self, in_features: int, out_features: int, activation: str, *,
                 dropout: float = 0.0, residual: bool = False, weighted_skip: bool = False):
        super().__init__(in_features, out_features)
        self.activation = make_activation(activation)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.residual = residual
        needs_matrix = residual and (weighted_skip or in_features != out_features)
        self.skip_weight = (
            nn.Parameter(torch.empty(out_features, in_features)) if needs_matrix else None
        )
        if self.skip_weight is not None:
            nn.init.xavier_normal_(self.skip_weight)

    def units(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(super().forward(x))  # (B, out)

    def forward(self, x: torch.Tensor, units: torch.Tensor | None = None) -> torch.Tensor:
        """The layer's output; pass `units` when `units(x)` was already computed."""
        h = self.units(x) if units is None else units  # (B, out)
        if self.dropout is not None:
            h = self.dropout(h)
        if self.residual:
            h = h + (x if self.skip_weight is None else x @ self.skip_weight.T)
        return h
