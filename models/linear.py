"""One-layer models: linear, logistic and softmax regression and the perceptron.

Which one is chosen by the output function: linear, sigmoid, softmax or hard limit.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from models.base import DataShape, LayerwiseModel
from models.config import ModelConfig
from models.initializers import InitName, initialize
from models.objectives import OutputName
from models.registry import register_model


class LinearConfig(ModelConfig):
    kind: Literal["linear"] = "linear"
    output: OutputName = "auto"
    init: InitName = "glorot_normal"


class LinearModel(LayerwiseModel):
    def __init__(self, config: LinearConfig, shape: DataShape):
        super().__init__()
        self.linear = nn.Linear(shape.input_dim, shape.output_dim)
        initialize(self, config.init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))  # (B, out)


@register_model(LinearConfig, description="Linear, logistic or softmax regression, or the "
                                          "perceptron (output: hardlimit).",
                supports=frozenset({"input_noise"}))  # no hidden units: no dropout, no activity
def build_linear(config: LinearConfig, shape: DataShape, dropout: float = 0.0) -> LinearModel:
    return LinearModel(config, shape)
