"""The `linear` model kind: its config and its declaration (its builder is in
models/linear.py)."""

from __future__ import annotations

from typing import Literal

from models.config import ModelConfig
from models.kinds.base import ModelKind
from models.kinds.honours import Honour
from models.kinds.names import InitName, OutputName


class LinearConfig(ModelConfig):
    kind: Literal["linear"] = "linear"
    output: OutputName = "auto"
    init: InitName = "glorot_normal"


KIND = ModelKind(
    LinearConfig,
    description=(
        "Linear, logistic or softmax regression, or the "
        "perceptron (output: hardlimit)."),
    honours=frozenset({Honour.INPUT_NOISE}),  # no hidden units: no dropout, no activity
)
