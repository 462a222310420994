"""The `cnn` model kind: its config and its declaration (its builder is in
models/cnn.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from models.config import ModelConfig, StrictConfig
from models.kinds.base import ModelKind
from models.kinds.names import ActivationName, InitName, OutputName


class ConvLayerConfig(StrictConfig):
    channels: int = Field(16, ge=1, le=4096, description="feature maps of this layer")
    kernel_size: int = Field(3, ge=1, le=1024, description="receptive field along each axis")
    stride: int = Field(1, ge=1, le=1024, description="step of the kernel along each axis")
    padding: Annotated[int, Field(ge=0, le=1024)] | Literal["same"] = Field(
        "same", description="zeros added on each side, or 'same' to keep the size")
    pool: Literal["max", "avg", "none"] = Field("max", description="pooling after the "
                                                    "convolution")
    pool_size: int = Field(2, ge=1, le=1024, description="pooling window and stride")
class CNNConfig(ModelConfig):
    kind: Literal["cnn"] = "cnn"
    conv: list[ConvLayerConfig] = Field(
        default_factory=lambda: [ConvLayerConfig.model_validate({"channels": c})
                                 for c in (16, 32)],
        min_length=1, max_length=100, description="convolution layers, input to output")
    dense: list[Annotated[int, Field(ge=1, le=1_000_000)]] = Field(
        default=[64], max_length=100, description="widths of the dense head's hidden layers")
    activation: ActivationName = "relu"
    input_shape: list[Annotated[int, Field(ge=1)]] | None = Field(
        None, min_length=2, max_length=3,
        description="read flat features as (C, L) or (C, H, W), e.g. [1, 8, 8]; null: the "
                    "data's own shape")
    output: OutputName = "auto"
    init: InitName = "glorot_normal"


KIND = ModelKind(
    CNNConfig,
    description=(
        "Convolutional net: 1-D or 2-D convolutions with max or "
        "average pooling, then a dense head."),
)
