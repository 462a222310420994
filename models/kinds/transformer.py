"""The `transformer` model kind: its config and its declaration (its builder is in
models/transformer.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from models.config import ModelConfig
from models.kinds.base import ModelKind
from models.kinds.names import InitName, OutputName


class TransformerConfig(ModelConfig):
    kind: Literal["transformer"] = "transformer"
    width: int = Field(32, ge=1, le=65_536, description="model width M (embedding size)")
    heads: int = Field(4, ge=1, le=1024, description="attention heads; must divide width")
    layers: int = Field(2, ge=1, le=128, description="transformer blocks")
    context: int | None = Field(None, ge=1, description="attention window N: a step attends to "
                                                        "itself and the N-1 before it; null: "
                                                        "the whole sequence")
    causal: bool = Field(True, description="attend only to the past; a language model must")
    positional: Literal["learned", "sinusoidal"] = Field(
        "learned", description="position encoding: a learned embedding, or fixed sinusoids")
    ff_mult: int = Field(4, ge=1, le=16, description="feed-forward width / model width")
    output: OutputName = "auto"
    init: InitName = "glorot_normal"


KIND = ModelKind(
    TransformerConfig,
    description=(
        "Decoder-only Transformer (nanoGPT style): "
        "causal multi-head self-attention over a "
        "context window, positions, feed-forward "
        "blocks, residuals, layer norm."),
)
