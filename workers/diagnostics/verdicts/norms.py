"""The per-layer norm curves the engine reads (`grad_norm/<layer>`, `update_norm/<layer>`,
`weight_norm/<layer>`, `grad_norm/total`), as plain arrays, and the one quantity derived from
them that several checks, the evidence and the plots use: the update/weight ratio.

A training run hands them over from its `NormHistory` (host copies of the norm logger's
flushes); a replay builds them from a finished run's MLflow metric histories.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class NormCurves:
    """One row per logged step, one column per key (in the order of `keys`)."""

    keys: list[str]
    steps: np.ndarray  # (S,)
    values: np.ndarray  # (S, K)

    def series(self, prefix: str, layers: list[str]) -> np.ndarray | None:
        """(S, L): `prefix/<layer>` for each layer, or None when that norm was not logged."""
        index = {key: i for i, key in enumerate(self.keys)}
        wanted = [f"{prefix}/{layer}" for layer in layers]
        if not layers or any(key not in index for key in wanted):
            return None
        return self.values[:, [index[key] for key in wanted]]

    def column(self, key: str) -> np.ndarray | None:
        return self.values[:, self.keys.index(key)] if key in self.keys else None


def update_weight_ratios(updates: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """||dW|| / ||W|| element-wise: how far a step moves a layer's weights, whatever their
    scale (inf or NaN where a weight norm is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return updates / weights


def layer_update_ratios(norms: NormCurves | None, layers: list[str]) -> np.ndarray | None:
    """(S, L) update/weight ratios per logged step and layer; None without both norms."""
    if norms is None:
        return None
    updates = norms.series("update_norm", layers)
    weights = norms.series("weight_norm", layers)
    if updates is None or weights is None or not len(updates):
        return None
    return update_weight_ratios(updates, weights)
