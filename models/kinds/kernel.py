"""The `kernel` model kind: its config and its declaration (its builder is in
models/kernel.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from models.config import ModelConfig
from models.kinds.base import ModelKind
from models.kinds.honours import Honour
from models.kinds.names import InitName, OutputName

MAX_FEATURES = 50_000  # gaussian's n_features; polynomial's count, checked by the builder


class KernelConfig(ModelConfig):
    kind: Literal["kernel"] = "kernel"
    features: Literal["polynomial", "gaussian"] = Field(
        "polynomial", description="the feature map: every monomial up to `degree`, or random "
        "Fourier features of a Gaussian kernel")
    degree: int = Field(2, ge=1, le=10, description="polynomial: the order n")
    c: float = Field(1.0, ge=0.0, description="polynomial: the constant c of (x^T y + c)^n")
    width: float = Field(1.0, gt=0.0, description="gaussian: h of exp(-||x - y||^2 / h)")
    n_features: int = Field(256, ge=1, le=MAX_FEATURES,
                            description="gaussian: number of random Fourier features")
    seed: int = Field(0, ge=0, description="gaussian: seeds the random frequencies")
    output: OutputName = "auto"
    init: InitName = "glorot_normal"


KIND = ModelKind(
    KernelConfig,
    description=(
        "Explicit polynomial or Gaussian (random Fourier) "
        "features, then a linear model: Cover's theorem."),
    honours=frozenset({Honour.DROPOUT, Honour.INPUT_NOISE}),
)
