"""Convolutional nets: 1-D (signals, (C, L)) or 2-D (images, (C, H, W)) convolutions, each with
max or average pooling, then a dense head. The lecture's z[n] = phi(sum_k w_c[k] x[n - k])."""

from __future__ import annotations

import torch
from torch import nn

from models.activations import make_activation
from models.base import DataShape, LayerwiseModel, ModelConfigError
from models.dense import DenseLayer
from models.initializers import initialize
from models.kinds.cnn import CNNConfig, ConvLayerConfig
from models.report import ModelReport, Pictures, probe_split

FEATURE_MAP_PANELS = 16


def _spatial_after(size: list[int], layer: ConvLayerConfig, index: int) -> list[int]:
    """The map size after layer `index`; ModelConfigError when nothing would be left."""
    padding = layer.kernel_size // 2 if layer.padding == "same" else layer.padding
    out = []
    for extent in size:
        padded = extent + 2 * padding
        if layer.kernel_size > padded:
            raise ModelConfigError(("conv", index, "kernel_size"), f"kernel size "
                                   f"{layer.kernel_size} is larger than the {padded}-wide "
                                   f"(padded) input of conv layer {index}; use a kernel of at "
                                   f"most {padded}")
        conv = (padded - layer.kernel_size) // layer.stride + 1
        pooled = conv // layer.pool_size if layer.pool != "none" else conv
        if pooled < 1:
            raise ModelConfigError(("conv", index, "pool_size"), f"pooling window "
                                   f"{layer.pool_size} is larger than the {conv}-wide map of "
                                   f"conv layer {index}; use pool_size <= {conv} or pool: none")
        out.append(pooled)
    return out


def conv_input_shape(config_shape: list[int] | None, shape: DataShape) -> tuple[int, ...]:
    """(C, L) or (C, H, W) to read each example as; ModelConfigError for flat data."""
    if config_shape is not None:
        wanted = 1
        for dim in config_shape:
            wanted *= dim
        if wanted != shape.input_dim:
            raise ModelConfigError(("input_shape",), f"input_shape {config_shape} holds "
                                   f"{wanted} values but each example has {shape.input_dim}")
        return tuple(config_shape)
    if len(shape.input_shape) in (2, 3):
        return shape.input_shape
    raise ModelConfigError(("input_shape",), f"a convolutional net needs signals (C, L) or "
                           f"images (C, H, W), and this data is flat {shape.input_shape}; set "
                           "model.input_shape (e.g. [1, 8, 8] for 64 pixels) or use image "
                           "data (digits: data.params.layout: image)")


class CNN(LayerwiseModel):
    def __init__(self, config: CNNConfig, shape: DataShape, dropout: float = 0.0):
        super().__init__()
        self.input_shape = conv_input_shape(config.input_shape, shape)
        spatial = list(self.input_shape[1:])
        conv_cls, pools = (nn.Conv1d, {"max": nn.MaxPool1d, "avg": nn.AvgPool1d}) if len(
            spatial) == 1 else (nn.Conv2d, {"max": nn.MaxPool2d, "avg": nn.AvgPool2d})
        channels = self.input_shape[0]
        self.conv = nn.ModuleList()
        self.pool = nn.ModuleList()
        self.act = nn.ModuleList()
        for i, layer in enumerate(config.conv):
            spatial = _spatial_after(spatial, layer, i)
            padding = layer.kernel_size // 2 if layer.padding == "same" else layer.padding
            self.conv.append(conv_cls(channels, layer.channels, layer.kernel_size,
                                      stride=layer.stride, padding=padding))
            self.act.append(make_activation(config.activation))
            self.pool.append(nn.Identity() if layer.pool == "none"
                             else pools[layer.pool](layer.pool_size))
            channels = layer.channels
        width = channels
        for extent in spatial:
            width *= extent
        widths = [width, *config.dense]
        self.dense = nn.ModuleList(DenseLayer(widths[i], widths[i + 1], config.activation,
                                              dropout=dropout) for i in range(len(config.dense)))
        self.output = nn.Linear(widths[-1], shape.output_dim)
        initialize(self, config.init)
        self._hidden: list[torch.Tensor] = []

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature maps after each conv layer's activation, before pooling."""
        h = x.reshape(x.shape[0], *self.input_shape)  # (B, C, L) or (B, C, H, W)
        maps = []
        for conv, act, pool in zip(self.conv, self.act, self.pool, strict=True):
            maps.append(act(conv(h)))  # (B, C_l, ...)
            h = pool(maps[-1])
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.features(x)
        h = self.pool[-1](maps[-1]).flatten(1)  # (B, C * spatial)
        hidden = []
        for layer in self.dense:
            h = layer(h)  # (B, H_l)
            hidden.append(h)
        self._hidden = hidden
        return self.output(h)  # (B, out)

    def hidden_activations(self) -> list[torch.Tensor]:
        return self._hidden

    @torch.no_grad()
    def after_training(self, splits: dict[str, tuple[torch.Tensor, torch.Tensor]]
                       ) -> ModelReport:
        """The first layer's feature maps for one validation example, beside the input."""
        x = probe_split(splits)[0][:1]
        self.eval()
        maps = self.features(x)[0][0, :FEATURE_MAP_PANELS]  # (C, L) or (C, H, W)
        first = x.reshape(1, *self.input_shape)[0, 0]  # (L,) or (H, W)
        if maps.dim() == 2:  # 1-D: each map is a strip
            maps, first = maps.unsqueeze(1), first.reshape(1, -1)
        panels = [first.cpu(), *[m.cpu() for m in maps]]
        # Panels may differ in size (stride, padding): pad each to the largest one.
        height = max(p.shape[0] for p in panels)
        width = max(p.shape[1] for p in panels)
        images = torch.stack([nn.functional.pad(p, (0, width - p.shape[1],
                                                    0, height - p.shape[0])) for p in panels])
        titles = ["input"] + [f"conv.0 map {i}" for i in range(len(panels) - 1)]
        return ModelReport(pictures={"cnn_feature_maps": Pictures(images, titles)})


def build_cnn(config: CNNConfig, shape: DataShape, dropout: float = 0.0) -> CNN:
    return CNN(config, shape, dropout)
