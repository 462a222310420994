"""Patterns to store and recall: random +-1 vectors or binarized digits, with corrupted copies.

Each example is a corrupted copy of one stored pattern (x) and the clean pattern (y), so the
natural task is "recall": Hopfield nets store the y and are scored on restoring y from x; RBMs
and denoising autoencoders learn the same pairs.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator
from sklearn import datasets as skd

from workers.data.registry import DatasetParams, register_dataset

MAX_VALUES = 20_000_000
DIGIT_THRESHOLD = 8.0  # of 16 grey levels: brighter pixels are +1


class PatternsParams(DatasetParams):
    source: Literal["random", "digits"] = Field(
        "random", description="random: independent +-1 units; digits: 8x8 digits binarized")
    patterns: int = Field(5, ge=1, le=1797, description="number of distinct stored patterns "
                                                        "(digits: at most 1797)")
    size: int = Field(100, ge=4, le=100_000, description="units per random pattern "
                                                         "(digits always have 64)")
    corruption: float = Field(0.1, ge=0.0, le=0.5,
                              description="fraction of units flipped in each input copy")
    copies: int = Field(10, ge=1, le=10_000, description="corrupted copies of each pattern")

    def values(self) -> int:
        units = 64 if self.source == "digits" else self.size
        return 2 * self.patterns * self.copies * units

    @model_validator(mode="after")
    def _not_too_large(self) -> PatternsParams:
        units = 64 if self.source == "digits" else self.size
        if self.patterns * self.copies * units > MAX_VALUES:
            raise ValueError(f"patterns * copies * units must stay below {MAX_VALUES:,}; "
                             "lower copies or patterns")
        return self


@register_dataset("patterns", PatternsParams,
                  description="+-1 patterns (random or binarized digits) and corrupted copies "
                              "of them: x corrupted, y clean; for Hopfield nets and RBMs")
def patterns(p: PatternsParams):
    rng = np.random.default_rng(p.seed)
    clean = _digit_patterns(p.patterns, rng) if p.source == "digits" else _random_patterns(
        p.patterns, p.size, rng)  # (P, D)
    y = np.repeat(clean, p.copies, axis=0)  # (P * copies, D)
    x = _flip(y, p.corruption, rng)
    extra = {"values": "pm1", "patterns": p.patterns, "corruption": p.corruption}
    if p.source == "digits":
        extra["image_shape"] = [1, 8, 8]
    return x, y, "recall", extra


def _random_patterns(count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(count, size))


def _digit_patterns(count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` digits, one of each class in turn (0, 1, ..., 9, 0, ...), so a few stored
    patterns are all different digits."""
    bunch = skd.load_digits()
    by_class = [rng.permutation(np.flatnonzero(bunch.target == c)) for c in range(10)]
    chosen = [by_class[i % 10][i // 10] for i in range(count)
              if i // 10 < len(by_class[i % 10])]
    leftover = np.setdiff1d(np.arange(len(bunch.target)), chosen)
    chosen += list(rng.permutation(leftover)[:count - len(chosen)])
    pixels = bunch.data[np.array(chosen)]  # (P, 64)
    return np.where(pixels >= DIGIT_THRESHOLD, 1.0, -1.0).astype(np.float32)


def _flip(y: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Each row with exactly round(fraction * D) of its units flipped, chosen at random."""
    flips = int(round(fraction * y.shape[1]))
    x = y.copy()
    if flips:
        order = np.argsort(rng.random(y.shape), axis=1)[:, :flips]  # (N, flips)
        np.put_along_axis(x, order, -np.take_along_axis(x, order, axis=1), axis=1)
    return x
