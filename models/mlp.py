"""Multi-layer perceptrons of any depth, with optional residual skips."""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from models.base import DataShape, LayerwiseModel
from models.dense import DenseLayer
from models.initializers import initialize
from models.kinds.mlp import MLPConfig


class MLP(LayerwiseModel):
    def __init__(self, config: MLPConfig, shape: DataShape, dropout: float = 0.0):
        super().__init__()
        widths = [shape.input_dim, *config.hidden]
        self.layers = nn.ModuleList(
            DenseLayer(widths[i], widths[i + 1], config.activation, dropout=dropout,
                       residual=config.residual and i > 0)
            for i in range(len(config.hidden))
        )
        self.output = nn.Linear(widths[-1], shape.output_dim)
        initialize(self, config.init)
        self._hidden: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)  # (B, D)
        hidden = []
        for layer in cast(list[DenseLayer], self.layers):
            units = layer.units(h)  # (B, H_l), before the dropout mask
            hidden.append(units)
            h = layer(h, units)  # (B, H_l)
        self._hidden = hidden
        return self.output(h)  # (B, out)

    def hidden_activations(self) -> list[torch.Tensor]:
        return self._hidden


def build_mlp(config: MLPConfig, shape: DataShape, dropout: float = 0.0) -> MLP:
    return MLP(config, shape, dropout)
