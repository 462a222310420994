"""The `captioner` model kind: its config and its declaration (its builder is in
models/captioner.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from models.config import ModelConfig
from models.kinds.base import ModelKind
from models.kinds.names import CellName, InitName, OutputName


class CaptionerConfig(ModelConfig):
    kind: Literal["captioner"] = "captioner"
    channels: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        default=[8, 16], min_length=1, max_length=8,
        description="encoder: 3x3 convolutions, each then 2x2 max-pooled while the image is "
                    "larger than 1x1")
    cell: CellName = "gru"
    hidden: int = Field(64, ge=1, le=65_536, description="decoder state size")
    embed_dim: int = Field(16, ge=1, le=65_536, description="token embedding size")
    output: OutputName = "auto"
    init: InitName = "glorot_normal"


KIND = ModelKind(
    CaptionerConfig,
    description=(
        "Image captioner, one-to-many: a CNN encoder "
        "and a recurrent decoder that emits a token "
        "sequence."),
)
