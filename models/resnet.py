"""Residual nets, dense or convolutional, with the lecture's skips over two layers:

    z(l) = h(W(l-1,l) z(l-1) + W(l-2,l) z(l-2))    weighted skips
    z(l) = h(g(z(l-2)) + z(l-2))                   identity skips
    z(l) = h(W(l-1,l) z(l-1))                      skip: none, the plain net of the same depth

A stem layer maps the input to `width`; the next depth - 1 layers form blocks of two, each
with a skip from its input to its second layer (an odd last layer gets a skip of its own).
"""

from __future__ import annotations

import torch
from torch import nn

from models.activations import make_activation
from models.base import DataShape, LayerwiseModel, ModelConfigError
from models.initializers import initialize
from models.kinds.names import SkipName
from models.kinds.resnet import ResNetConfig


class ResidualBlock(nn.Module):
    """One or two layers; the skip adds the block's input before the last activation."""

    def __init__(self, layers: list[nn.Module], skip: SkipName, skip_layer: nn.Module | None,
                 activation: str, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.acts = nn.ModuleList(make_activation(activation) for _ in layers)
        self.skip = skip_layer  # W(l-2,l) for weighted skips
        self.identity = skip == "identity"
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, z: torch.Tensor, hidden: list[torch.Tensor]) -> torch.Tensor:
        h = z
        for i, (layer, act) in enumerate(zip(self.layers, self.acts, strict=True)):
            pre = layer(h)  # (B, width, ...)
            if i == len(self.layers) - 1:
                if self.skip is not None:
                    pre = pre + self.skip(z)
                elif self.identity:
                    pre = pre + z
            h = self.dropout(act(pre))
            hidden.append(h)
        return h


class ResNet(LayerwiseModel):
    def __init__(self, config: ResNetConfig, shape: DataShape, dropout: float = 0.0):
        super().__init__()
        self.conv = config.layout == "conv"
        self.input_shape = _conv_shape(config, shape) if self.conv else (shape.input_dim,)
        width, k = config.width, config.kernel_size

        def layer(fan_in: int, bias: bool = True) -> nn.Module:
            if not self.conv:
                return nn.Linear(fan_in, width, bias=bias)
            conv = nn.Conv1d if len(self.input_shape) == 2 else nn.Conv2d
            return conv(fan_in, width, k if bias else 1, padding=k // 2 if bias else 0,
                        bias=bias)

        self.stem = layer(self.input_shape[0])
        self.stem_act = make_activation(config.activation)
        trunk = config.depth - 1
        self.blocks = nn.ModuleList(
            ResidualBlock([layer(width) for _ in range(min(2, trunk - start))], config.skip,
                          layer(width, bias=False) if config.skip == "weighted" else None,
                          config.activation, dropout)
            for start in range(0, trunk, 2))
        self.output = nn.Linear(width, shape.output_dim)
        initialize(self, config.init)
        self._hidden: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.stem_act(self.stem(x.reshape(x.shape[0], *self.input_shape)))  # (B, W, ...)
        hidden = [z]
        for block in self.blocks:
            z = block(z, hidden)  # (B, W, ...)
        self._hidden = hidden
        if self.conv:
            z = z.flatten(2).mean(dim=2)  # global average pool: (B, W)
        return self.output(z)  # (B, out)

    def hidden_activations(self) -> list[torch.Tensor]:
        return self._hidden


def _conv_shape(config: ResNetConfig, shape: DataShape) -> tuple[int, ...]:
    if config.kernel_size % 2 == 0:
        raise ModelConfigError(("kernel_size",), "a residual conv layer keeps its map size, "
                                                 "which needs an odd kernel_size")
    if config.input_shape is not None:
        wanted = 1
        for dim in config.input_shape:
            wanted *= dim
        if wanted != shape.input_dim:
            raise ModelConfigError(("input_shape",), f"input_shape {config.input_shape} holds "
                                   f"{wanted} values but each example has {shape.input_dim}")
        return tuple(config.input_shape)
    if len(shape.input_shape) in (2, 3):
        return shape.input_shape
    raise ModelConfigError(("layout",), f"layout: conv needs signals (C, L) or images (C, H, W),"
                           f" and this data is flat {shape.input_shape}; set model.input_shape "
                           "(e.g. [1, 8, 8]), use image data, or layout: dense")


def build_resnet(config: ResNetConfig, shape: DataShape, dropout: float = 0.0) -> ResNet:
    return ResNet(config, shape, dropout)
