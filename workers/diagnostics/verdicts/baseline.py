"""The task's baseline: what a model that ignores its inputs scores, measured on the training
targets and in the units the loop logs (`val/loss`, `val/accuracy`).

- classification  the class prior: cross-entropy = the prior's entropy (MSE on one-hot:
                  (1 - sum p^2) / C), accuracy = the majority class's share;
- binary          the same with each output's prior: BCE = the Bernoulli entropy (MSE: p(1-p));
- language_model  the unigram model: cross-entropy = the token frequencies' entropy, accuracy =
                  the most frequent token's share;
- regression, sequence, reconstruction
                  the mean predictor (for an autoencoder: the mean input): MSE = the targets'
                  variance per output, averaged;
- recall          answering the corrupted input unchanged: its MSE to the clean pattern and
                  the share of patterns it gets exactly right (Hopfield, RBM).

A loss the baseline cannot be put in (the perceptron criterion) is null.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Baseline:
    kind: str
    loss: float | None
    accuracy: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "loss": self.loss, "accuracy": self.accuracy}


def measure_baseline(task: str, loss_name: str, y: Any, x: Any = None) -> Baseline | None:
    """The baseline of `task` for the training targets `y` (and inputs `x`, for recall)."""
    y = _host(y)
    if y is None or y.size == 0:
        return None
    if task == "classification" or task == "language_model":
        kind = "class_prior" if task == "classification" else "unigram"
        labels = y.astype(np.int64).ravel()
        counts = np.bincount(labels[labels >= 0])  # a negative label is an ignored position
        if not counts.sum():
            return None
        p = counts[counts > 0] / counts.sum()
        loss = {"cross_entropy": float(-(p * np.log(p)).sum()),
                "mse": float((1.0 - (p ** 2).sum()) / max(len(counts), 1))}.get(loss_name)
        return Baseline(kind, loss, float(p.max()))
    if task == "binary":
        p = np.clip(y.reshape(len(y), -1).mean(axis=0), 1e-12, 1 - 1e-12)  # per output
        bce = float(np.mean(-(p * np.log(p) + (1 - p) * np.log(1 - p))))
        loss = {"bce": bce, "mse": float(np.mean(p * (1 - p)))}.get(loss_name)
        return Baseline("class_prior", loss, float(np.mean(np.maximum(p, 1 - p))))
    if task == "recall":
        x = _host(x)
        if x is None or x.shape != y.shape:
            return None
        flat_x, flat_y = np.sign(x.reshape(len(x), -1)), np.sign(y.reshape(len(y), -1))
        exact = float((flat_x == flat_y).all(axis=1).mean())
        return Baseline("corrupted_input", float(np.mean((x - y) ** 2)), exact)
    if task in ("regression", "sequence", "reconstruction"):
        kind = "mean_input" if task == "reconstruction" else "mean_predictor"
        loss = float(y.reshape(len(y), -1).var(axis=0).mean()) if loss_name == "mse" else None
        return Baseline(kind, loss, None)
    return None


def _host(values: Any) -> np.ndarray | None:
    if values is None:
        return None
    if hasattr(values, "detach"):
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float64)
