"""Multi-layer perceptrons of any depth, with optional residual skips."""

from __future__ import annotations

from typing import Annotated, Literal, cast

import torch
from pydantic import Field
from torch import nn

from models.activations import ActivationName
from models.base import DataShape, LayerwiseModel
from models.config import ModelConfig
from models.dense import DenseLayer
from models.initializers import InitName, initialize
from models.objectives import OutputName
from models.registry import register_model


class MLPConfig(ModelConfig):
    kind: Literal["mlp"] = "mlp"
    hidden: list[Annotated[int, Field(ge=1, le=1_000_000)]] = Field(
        default=[64, 64], min_length=1, max_length=1000,
                              description="width of each hidden layer, input to output")
    activation: ActivationName = "relu"
    output: OutputName = "auto"
    residual: bool = Field(False,
                           description="add a skip around every hidden layer after the first")
    init: InitName = "glorot_normal"


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


@register_model(MLPConfig, description="Multi-layer perceptron of any depth and activation, "
                                       "optionally with residual skips.")
def build_mlp(config: MLPConfig, shape: DataShape, dropout: float = 0.0) -> MLP:
    return MLP(config, shape, dropout)
