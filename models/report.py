"""What a model shows after training beyond the loop's metrics: curves and pictures.

Models fill a `ModelReport` with plain tensors and numbers; the worker logs every curve as an
MLflow metric history and draws every curve and picture under `plots/`. Models never plot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


@dataclass
class Curve:
    """One metric over its own x axis (update number, stored patterns, ...), logged with
    step = x."""

    steps: list[int]
    values: list[float]
    xlabel: str = "step"
    ylabel: str = ""


@dataclass
class Pictures:
    """A grid of grey pictures (N, H, W), one panel each, titled in order."""

    images: torch.Tensor
    titles: list[str] = field(default_factory=list)
    columns: int = 8


@dataclass
class ModelReport:
    """Keyed by MLflow metric key (curves) or picture name (pictures)."""

    curves: dict[str, Curve] = field(default_factory=dict)
    pictures: dict[str, Pictures] = field(default_factory=dict)


def picture_shape(units: int, image_shape: list[int] | tuple[int, ...] | None = None
                  ) -> tuple[int, int]:
    """(H, W) to draw a vector of `units` values as a picture: the data's own image shape when
    it has one, else the most nearly square factorization."""
    if image_shape and math.prod(image_shape[-2:]) == units:
        return int(image_shape[-2]), int(image_shape[-1])
    height = max(h for h in range(1, math.isqrt(units) + 1) if units % h == 0)
    return height, units // height


def probe_split(splits: dict[str, tuple[torch.Tensor, torch.Tensor]]
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The examples to show after training: validation when there is any, else training."""
    val = splits.get("val")
    return val if val is not None and len(val[0]) else splits["train"]
