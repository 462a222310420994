"""One-layer models: linear, logistic and softmax regression and the perceptron.

Which one is chosen by the output function: linear, sigmoid, softmax or hard limit.
"""

from __future__ import annotations

import torch
from torch import nn

from models.base import DataShape, LayerwiseModel
from models.initializers import initialize
from models.kinds.linear import LinearConfig


class LinearModel(LayerwiseModel):
    def __init__(self, config: LinearConfig, shape: DataShape):
        super().__init__()
        self.linear = nn.Linear(shape.input_dim, shape.output_dim)
        initialize(self, config.init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))  # (B, out)


def build_linear(config: LinearConfig, shape: DataShape, dropout: float = 0.0) -> LinearModel:
    return LinearModel(config, shape)
