"""Small tabular datasets of the lecture, generated offline from a seed.

digits comes with scikit-learn; the others are generated: xor, circles, moons, spirals and
blobs for classification, `function` for the universal-approximation demo.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from pydantic import Field
from sklearn import datasets as skd

from workers.data.registry import DatasetParams, register_dataset


class DigitsParams(DatasetParams):
    layout: Literal["flat", "image"] = Field(
        "flat", description="flat: 64 features; image: 1x8x8 arrays for convolutional nets")
    binarize: bool = Field(False, description="pixels above half intensity 1, others 0: "
                                              "binary inputs (bit-flip corruption, RBMs)")


@register_dataset("digits", DigitsParams,
                  description="scikit-learn's 1797 handwritten digits, 8x8 pixels scaled to [0, 1]")
def digits(p: DigitsParams):
    bunch = skd.load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    if p.binarize:
        x = (x > 0.5).astype(np.float32)
    if p.layout == "image":
        x = x.reshape(-1, 1, 8, 8)
    return x, bunch.target.astype(np.int64), "classification", {"image_shape": [1, 8, 8]}


class PointsParams(DatasetParams):
    n: int = Field(400, ge=8, le=1_000_000, description="number of examples")
    noise: float = Field(0.1, ge=0.0, le=10.0, description="standard deviation of the noise")

    def values(self) -> int:
        return self.n * (getattr(self, "features", 2) + 1)


@register_dataset("xor", PointsParams,
                  description="four Gaussian clusters at the corners of the unit square, "
                              "labelled by XOR; not linearly separable")
def xor(p: PointsParams):
    rng = np.random.default_rng(p.seed)
    corners = rng.integers(0, 2, size=(p.n, 2))
    x = corners + rng.normal(0.0, p.noise, size=(p.n, 2))
    y = corners[:, 0] ^ corners[:, 1]
    return x.astype(np.float32), y.astype(np.int64), "binary", {}


class CirclesParams(PointsParams):
    factor: float = Field(0.5, gt=0.0, lt=1.0, description="inner radius / outer radius")


@register_dataset("circles", CirclesParams,
                  description="two concentric circles (Cover's theorem demo)")
def circles(p: CirclesParams):
    x, y = skd.make_circles(p.n, noise=p.noise, factor=p.factor, random_state=p.seed)
    return x.astype(np.float32), y.astype(np.int64), "binary", {}


@register_dataset("moons", PointsParams, description="two interleaving half circles")
def moons(p: PointsParams):
    x, y = skd.make_moons(p.n, noise=p.noise, random_state=p.seed)
    return x.astype(np.float32), y.astype(np.int64), "binary", {}


class SpiralsParams(PointsParams):
    classes: int = Field(2, ge=2, le=10, description="number of spiral arms")
    turns: float = Field(1.5, gt=0.0, le=10.0, description="revolutions of each arm")


@register_dataset("spirals", SpiralsParams, description="interleaved spiral arms, one per class")
def spirals(p: SpiralsParams):
    rng = np.random.default_rng(p.seed)
    y = rng.integers(0, p.classes, size=p.n)
    t = rng.uniform(0.05, 1.0, size=p.n)
    angle = t * p.turns * 2 * np.pi + y * 2 * np.pi / p.classes
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
    x += rng.normal(0.0, p.noise * 0.1, size=x.shape)
    return x.astype(np.float32), y.astype(np.int64), "classification", {}


class BlobsParams(PointsParams):
    centers: int = Field(3, ge=2, le=100, description="number of blobs (classes)")
    features: int = Field(2, ge=1, le=10_000, description="input dimensions")
    # Data faults to study (docs/data.md): the diagnosis calls them `bad_data`, the fix is
    # data.standardize. 1 and 0 leave the blobs as they are.
    spread: float = Field(1.0, ge=1.0, le=1e6, description="the last feature's scale over the "
                          "first's: features are scaled geometrically from 1 to this "
                          "(unscaled inputs)")
    offset: float = Field(0.0, ge=-1e6, le=1e6, description="added to every feature "
                          "(inputs far from zero)")


@register_dataset("blobs", BlobsParams, description="isotropic Gaussian blobs, one per class")
def blobs(p: BlobsParams):
    x, y = skd.make_blobs(p.n, n_features=p.features, centers=p.centers,
                          cluster_std=max(p.noise, 1e-6) * 10, random_state=p.seed)
    x = x * np.geomspace(1.0, p.spread, p.features) + p.offset
    return x.astype(np.float32), y.astype(np.int64), "classification", {}


class FunctionParams(PointsParams):
    fn: Literal["square", "sin", "abs", "sign"] = Field("sin", description="the function "
                                                        "f (sin: sin(pi x))")
    noise: float = Field(0.0, ge=0.0, le=10.0, description="standard deviation of the noise "
                                                           "added to y")
    # A data fault to study: targets far from unit scale (`bad_data`, data.standardize).
    y_scale: float = Field(1.0, gt=0.0, le=1e6, description="y is multiplied by this "
                           "(unscaled targets)")
    y_offset: float = Field(0.0, ge=-1e6, le=1e6, description="then this is added to y")


_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "square": np.square, "sin": lambda x: np.sin(np.pi * x), "abs": np.abs, "sign": np.sign}


@register_dataset("function", FunctionParams,
                  description="y = f(x) on [-1, 1] for f in square, sin, abs, sign: the "
                              "universal-approximation demo")
def function(p: FunctionParams):
    rng = np.random.default_rng(p.seed)
    x = rng.uniform(-1.0, 1.0, size=(p.n, 1))
    y = _FUNCTIONS[p.fn](x) + rng.normal(0.0, p.noise, size=x.shape)
    y = y * p.y_scale + p.y_offset
    return x.astype(np.float32), y.astype(np.float32), "regression", {}
