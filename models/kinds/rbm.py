"""The `rbm` model kind: its config and its declaration (its builder is in
models/rbm.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from models.config import ModelConfig
from models.kinds.base import ModelKind


class RBMConfig(ModelConfig):
    kind: Literal["rbm"] = "rbm"
    hidden: int = Field(64, ge=1, le=100_000, description="hidden units")
    k: int = Field(1, ge=1, le=1000, description="Gibbs steps of contrastive divergence (CD-k)")
    lr: float = Field(0.5, gt=0.0, le=10.0, description="CD step size (the spec's optimizer is "
                                                        "not used: there is no gradient)")
    init_std: float = Field(0.01, gt=0.0, le=1.0, description="std of the initial weights")
    samples: int = Field(16, ge=1, le=256, description="Gibbs chains drawn after training")
    sample_steps: int = Field(200, ge=1, le=100_000, description="Gibbs steps per drawn sample")


KIND = ModelKind(
    RBMConfig,
    description=(
        "Binary-binary restricted Boltzmann machine trained with "
        "contrastive divergence (CD-k)."),
    honours=frozenset(),
)
