"""The `mlp` model kind: its config and its declaration (its builder is in
models/mlp.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from models.config import ModelConfig
from models.kinds.base import ModelKind
from models.kinds.names import ActivationName, InitName, OutputName


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


KIND = ModelKind(
    MLPConfig,
    description=(
        "Multi-layer perceptron of any depth and activation, "
        "optionally with residual skips."),
)
