"""`data.standardize`: each input feature (and a regression's each target) rescaled to mean 0
and std 1, fitted on the training split only and applied to every split, so that validation
and test are scaled as the model will see new data, and nothing of them leaks into the fit.

A feature constant on the training split (std 0) is divided by 1: it is only centred. The
fitted mean and std are kept on the bundle (`DataBundle.standardization`) and logged with the
run (standardization.json), so predictions can be mapped back: `y = y_std * std + mean`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from workers.data.bundle import DataBundle, DataError

LOC = ("data", "standardize")
# Tasks whose inputs are token ids or binary patterns: rescaling them changes what they mean.
_NOT_REAL_INPUTS = ("language_model", "recall")


def standardize(bundle: DataBundle, how: str) -> DataBundle:
    """The bundle with its inputs and/or targets standardized as `how` says (none, inputs,
    targets, both); the fitted statistics in `bundle.standardization`.

    Raises:
        DataError: at data.standardize, when the task's inputs or targets are not real values.
    """
    if how == "none":
        return bundle
    fitted: dict[str, Any] = {}
    if how in ("inputs", "both"):
        if bundle.task in _NOT_REAL_INPUTS or bundle.extra.get("vocab_size"):
            raise DataError(LOC, f"this data's inputs are token ids or patterns (task "
                                 f"{bundle.task!r}), which rescaling would change; set "
                                 "data.standardize: none")
        fitted["inputs"] = _fit_and_apply(bundle, "x")
    if how in ("targets", "both"):
        if bundle.task != "regression":
            raise DataError(LOC, f"data.standardize: {how} rescales a regression's targets, "
                                 f"and this run's task is {bundle.task!r}, whose targets are "
                                 "labels; use data.standardize: inputs (or none)")
        fitted["targets"] = _fit_and_apply(bundle, "y")
    bundle.standardization = fitted
    return bundle


def _fit_and_apply(bundle: DataBundle, part: str) -> dict[str, Any]:
    """Fit `part` ("x" or "y") on the training split, rescale every split of it, and return
    what was fitted."""
    mean, std = _fit(getattr(bundle, f"{part}_train"))
    for split in ("train", "val", "test"):
        _apply(bundle, f"{part}_{split}", mean, std)
    return _as_json(mean, std)


def _fit(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-element mean and std over the training rows (float64 for the sums); std 0 -> 1."""
    values = train.astype(np.float64)
    mean = values.mean(axis=0) if len(values) else np.zeros(values.shape[1:])
    std = values.std(axis=0) if len(values) else np.ones(values.shape[1:])
    return mean, np.where(std > 0, std, 1.0)


def _apply(bundle: DataBundle, name: str, mean: np.ndarray, std: np.ndarray) -> None:
    part = getattr(bundle, name)
    if part is not None and len(part):  # a new array: the loader's cache keeps the original
        setattr(bundle, name, ((part - mean) / std).astype(np.float32))


def _as_json(mean: np.ndarray, std: np.ndarray) -> dict[str, Any]:
    return {"shape": list(mean.shape), "mean": mean.reshape(-1).tolist(),
            "std": std.reshape(-1).tolist()}
