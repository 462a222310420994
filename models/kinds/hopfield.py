"""The `hopfield` model kind: its config and its declaration (its builder is in
models/hopfield.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from models.config import ModelConfig
from models.kinds.base import ModelKind
from models.kinds.names import UpdateName


class HopfieldConfig(ModelConfig):
    kind: Literal["hopfield"] = "hopfield"
    update: UpdateName = Field("async", description="async: one unit at a time in random "
                                                    "order; sync: all units at once")
    max_sweeps: int = Field(20, ge=1, le=1000, description="passes over the units in recall")
    capacity_curve: bool = Field(True, description="after training, recall accuracy of random "
                                                   "patterns as the number stored grows")
    capacity_max_patterns: int | None = Field(None, ge=1, le=10_000,
                                              description="largest load of the curve; null: "
                                                          "a quarter of the units")
    capacity_trials: int = Field(4, ge=1, le=100, description="corrupted copies per pattern")
    seed: int = Field(0, ge=0, description="seeds the capacity curve's patterns")


KIND = ModelKind(
    HopfieldConfig,
    description=(
        "Hopfield net: Hebbian storage of +-1 patterns, "
        "asynchronous or synchronous sign recall, energy."),
    honours=frozenset(),
)
