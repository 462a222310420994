"""The `resnet` model kind: its config and its declaration (its builder is in
models/resnet.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from models.config import ModelConfig
from models.kinds.base import ModelKind
from models.kinds.names import ActivationName, InitName, OutputName, SkipName


class ResNetConfig(ModelConfig):
    kind: Literal["resnet"] = "resnet"
    layout: Literal["dense", "conv"] = Field(
        "dense", description="dense: residual MLP; conv: residual CNN on (C, L) or (C, H, W)")
    depth: int = Field(20, ge=1, le=1000, description="hidden layers, the stem included")
    width: int = Field(64, ge=1, le=100_000, description="units (dense) or channels (conv)")
    kernel_size: int = Field(3, ge=1, le=63, description="conv: odd, so 'same' padding exists")
    skip: SkipName = Field("identity", description="identity, weighted (a learned W(l-2,l)), "
                                                   "or none for the plain net")
    activation: ActivationName = "relu"
    input_shape: list[int] | None = Field(None, min_length=2, max_length=3,
                                          description="conv: read flat features as this shape")
    output: OutputName = "auto"
    init: InitName = "glorot_normal"


KIND = ModelKind(
    ResNetConfig,
    description=(
        "Residual MLP or residual CNN with identity or weighted "
        "skips over two layers; skip: none gives the plain "
        "net of the same depth."),
)
