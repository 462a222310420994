"""Kernel machines with explicit feature maps, then a linear model (Cover's theorem).

polynomial: phi(x) with phi(x)^T phi(y) = (x^T y + c)^n exactly, one feature per monomial of
degree <= n (the lecture's [1, x1^2, x2^2, sqrt2 x1, sqrt2 x2, sqrt2 x1 x2] for n = 2, c = 1).
gaussian: random Fourier features, phi(x)^T phi(y) ~ exp(-||x - y||^2 / h) (Rahimi and Recht),
since the Gaussian kernel's own feature space is infinite.
"""

from __future__ import annotations

import math
from collections import Counter
from itertools import combinations_with_replacement

import torch
from torch import nn

from models.base import DataShape, LayerwiseModel, ModelConfigError
from models.initializers import initialize
from models.kinds.kernel import MAX_FEATURES, KernelConfig


def polynomial_terms(dim: int, degree: int, c: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Index and coefficient of each feature of the degree-n polynomial kernel.

    With x' = [sqrt(c), x], (x'^T y')^n = sum over multisets a of n indices of
    (n! / prod(counts!)) x'_a y'_a, so phi_a(x) = sqrt(n! / prod(counts!)) prod x'_a.
    """
    terms = list(combinations_with_replacement(range(dim + 1), degree))
    index = torch.tensor(terms, dtype=torch.long).reshape(len(terms), degree)  # (F, n)
    coef = [math.factorial(degree) / math.prod(math.factorial(k) for k in Counter(t).values())
            for t in terms]
    return index, torch.tensor(coef).sqrt()  # (F, n), (F,)


def polynomial_feature_count(dim: int, degree: int) -> int:
    return math.comb(dim + degree, degree)


class PolynomialFeatures(nn.Module):
    index: torch.Tensor
    coef: torch.Tensor

    def __init__(self, dim: int, degree: int, c: float):
        super().__init__()
        index, coef = polynomial_terms(dim, degree, c)
        self.register_buffer("index", index)
        self.register_buffer("coef", coef)
        self.sqrt_c = math.sqrt(c)
        self.out_features = len(coef)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ones = torch.full_like(x[:, :1], self.sqrt_c)  # (B, 1)
        augmented = torch.cat([ones, x], dim=1)  # (B, D + 1)
        picked = augmented[:, self.index]  # (B, F, n)
        return picked.prod(dim=2) * self.coef  # (B, F)


class RandomFourierFeatures(nn.Module):
    """phi(x) = sqrt(2 / m) cos(W x + b), W ~ N(0, 2 / h), b ~ U(0, 2 pi): fixed, not learned."""

    freqs: torch.Tensor
    phase: torch.Tensor

    def __init__(self, dim: int, count: int, width: float, seed: int):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        freqs = torch.randn(count, dim, generator=generator) * math.sqrt(2.0 / width)
        self.register_buffer("freqs", freqs)  # (m, D)
        self.register_buffer("phase", torch.rand(count, generator=generator) * 2 * math.pi)
        self.out_features = count

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return math.sqrt(2.0 / self.out_features) * torch.cos(x @ self.freqs.T + self.phase)


class KernelModel(LayerwiseModel):
    def __init__(self, config: KernelConfig, shape: DataShape, dropout: float = 0.0):
        super().__init__()
        dim = shape.input_dim
        self.features: nn.Module
        if config.features == "polynomial":
            self.features = PolynomialFeatures(dim, config.degree, config.c)
        else:
            self.features = RandomFourierFeatures(dim, config.n_features, config.width,
                                                  config.seed)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.linear = nn.Linear(self.features.out_features, shape.output_dim)  # type: ignore
        initialize(self, config.init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        phi = self.features(x.flatten(1))  # (B, F)
        return self.linear(self.dropout(phi))  # (B, out)


def build_kernel(config: KernelConfig, shape: DataShape, dropout: float = 0.0) -> KernelModel:
    if config.features == "polynomial":
        count = polynomial_feature_count(shape.input_dim, config.degree)
        if count > MAX_FEATURES:
            raise ModelConfigError(("degree",), f"degree {config.degree} on {shape.input_dim} "
                                   f"inputs gives {count:,} features (at most {MAX_FEATURES:,});"
                                   " lower the degree or use features: gaussian")
    return KernelModel(config, shape, dropout)
