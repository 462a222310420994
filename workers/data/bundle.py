"""A loaded dataset: train/validation/test arrays plus what a model needs to size itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.base import DataShape


class DataError(ValueError):
    """Data that cannot be loaded as asked; `loc` is the spec path (starting with "data")."""

    def __init__(self, loc: tuple[str | int, ...], msg: str):
        super().__init__(msg)
        self.loc = loc
        self.msg = msg


@dataclass
class DataBundle:
    """Arrays keep the shapes they came in; the model kind decides how to read them.

    Attributes:
        task: the data's natural task (classification, binary, regression, ...).
        output_dim: classes for classification, 1 for binary, target width for regression.
        extra: dataset facts a model may need (image shape, vocabulary, ...).
        standardization: what `data.standardize` fitted (workers/data/standardize.py).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    task: str
    output_dim: int
    extra: dict[str, Any] = field(default_factory=dict)
    # data.standardize's fit on the training split ({"inputs"|"targets": {shape, mean, std}});
    # None: the arrays are as the data gave them.
    standardization: dict[str, Any] | None = None

    def shape(self, task: str | None = None) -> DataShape:
        task = task or self.task
        extra = dict(self.extra)
        # a target at every step: (N, T) class ids or (N, T, F) values
        extra.setdefault("per_step", task in ("classification", "language_model", "sequence")
                         and self.y_train.ndim >= 2)
        return DataShape(tuple(self.x_train.shape[1:]), self.output_dim, task, extra)

    def splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        out = {"train": (self.x_train, self.y_train), "val": (self.x_val, self.y_val)}
        if self.x_test is not None and self.y_test is not None and len(self.x_test):
            out["test"] = (self.x_test, self.y_test)
        return out

    @property
    def nbytes(self) -> int:
        """The bytes the arrays hold, what a cache of bundles is bounded by (`extra` is a few
        facts, small next to them). Arrays that share memory are counted each time."""
        arrays = (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test)
        return sum(int(a.nbytes) for a in arrays if a is not None)


def split(x: np.ndarray, y: np.ndarray, *, val_fraction: float, test_fraction: float, seed: int,
          task: str, output_dim: int, extra: dict[str, Any] | None = None) -> DataBundle:
    """Shuffle with `seed` and cut train / val / test: the same seed gives the same split."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    n_val = int(round(len(x) * val_fraction))
    test, val, train = np.split(order, [n_test, n_test + n_val])
    return DataBundle(x[train], y[train], x[val], y[val],
                      x[test] if n_test else None, y[test] if n_test else None,
                      task, output_dim, extra or {})


def targets_for_task(y: np.ndarray, task: str) -> tuple[np.ndarray, int]:
    """Targets in the dtype and shape the objective expects, and the output width."""
    if task in ("classification", "language_model"):
        y = y.astype(np.int64)
        # one class per example (N,), or one per step (N, T) for sequence targets
        y = y.reshape(-1) if y.ndim == 1 or int(np.prod(y.shape[1:])) == 1 else y
        return y, int(y.max()) + 1 if len(y) else 1
    if task == "sequence":
        y = y.astype(np.float32)
        y = y[..., None] if y.ndim == 2 else y  # (N, T, F): F values per step
        return y, int(y.shape[-1])
    if task == "binary":
        return y.astype(np.float32).reshape(-1, 1), 1
    y = y.astype(np.float32)
    y = y.reshape(-1, 1) if y.ndim == 1 else y
    return y, int(np.prod(y.shape[1:]))
