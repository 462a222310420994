"""The `autoregressive` model kind: its config and its declaration (its builder is in
models/autoregressive.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from models.config import ModelConfig
from models.kinds.base import ModelKind
from models.kinds.names import ActivationName, InitName, OutputName


class AutoregressiveConfig(ModelConfig):
    kind: Literal["autoregressive"] = "autoregressive"
    channels: int = Field(32, ge=1, le=65_536, description="width of every convolution")
    layers: int = Field(4, ge=1, le=64, description="dilated causal convolutions")
    kernel_size: int = Field(2, ge=1, le=64, description="taps of every convolution")
    dilation_growth: int = Field(2, ge=1, le=16, description="layer l has dilation growth^l")
    activation: ActivationName = "relu"
    residual: bool = Field(True, description="add each layer's input to its output")
    embed_dim: int = Field(16, ge=1, le=65_536, description="token inputs: embedding size")
    mode: Literal["auto", "many_to_one", "many_to_many"] = Field(
        "auto", description="one output per sequence or one per step; auto follows the data")
    output: OutputName = "auto"
    init: InitName = "glorot_normal"


KIND = ModelKind(
    AutoregressiveConfig,
    description=(
        "Autoregressive feed-forward net: causal "
        "dilated 1-D convolutions predicting the "
        "next sample from the past k; generates by "
        "sampling."),
)
