"""The data, objective and model a spec describes, as a worker trains them and as the dry run at
submission checks them: one loading path and one cache for both.

Loaded datasets are kept for the next run or submission on the same data, bounded in bytes:
one entry can be a user's file of hundreds of MB, and a count alone would let a few of those
fill the API process. A data file is keyed by its modification time as well, so a file changed
since it was loaded is read, and capped, again.
"""

from __future__ import annotations

import json
import os

import torch

from models.base import LayerwiseModel
from models.builders import build_model
from models.objectives import Objective
from services.byte_cache import ByteBoundedCache
from services.contract.spec import ExperimentSpec
from workers.data import DataBundle, load_data

DATA_CACHE_BYTES = 256_000_000
_bundles: ByteBoundedCache[str, DataBundle] = ByteBoundedCache(
    DATA_CACHE_BYTES, size_of=lambda bundle: bundle.nbytes, max_items=32)


def prepare(spec: ExperimentSpec, data_roots: list[str], device: torch.device, *,
            max_data_bytes: int | None = None
            ) -> tuple[DataBundle, Objective, LayerwiseModel]:
    """The data, objective and model a spec describes, the model on `device`."""
    bundle = load_bundle(spec, data_roots, max_data_bytes)
    objective = objective_of(spec, bundle)
    return bundle, objective, model_of(spec, bundle).to(device)


def load_bundle(spec: ExperimentSpec, data_roots: list[str], max_bytes: int | None = None, *,
                max_classes: int | None = None) -> DataBundle:
    """The spec's data, from the cache when it was loaded before under the same caps
    (`max_classes`: the submission's; None, as a worker loads it: not capped again).

    Raises:
        DataError: with the spec path of what is wrong and how to fix it.
    """
    key = json.dumps([data_key(spec, data_roots), max_bytes, max_classes])
    bundle = _bundles.get(key)
    if bundle is None:
        bundle = load_data(spec.data, spec.task, data_roots, max_bytes=max_bytes,
                           max_classes=max_classes)
        _bundles.put(key, bundle)
    return bundle


def objective_of(spec: ExperimentSpec, bundle: DataBundle) -> Objective:
    """Raises ObjectiveError when the loss, the output and the data's task do not fit."""
    return Objective.resolve(bundle.task, getattr(spec.model, "output", "auto"), spec.loss)


def model_of(spec: ExperimentSpec, bundle: DataBundle) -> LayerwiseModel:
    """The spec's model for this data, on torch's current default device."""
    return build_model(spec.model, bundle.shape(), dropout=spec.regularization.dropout)


def data_key(spec: ExperimentSpec, data_roots: list[str]) -> str:
    """What determines the data a spec loads."""
    return json.dumps([spec.data.model_dump(mode="json"), spec.task, data_roots,
                       data_mtime(spec, data_roots)], sort_keys=True)


def data_mtime(spec: ExperimentSpec, data_roots: list[str]) -> float | None:
    """The latest modification time of the spec's data file under the roots; None for a
    built-in dataset or a path that does not resolve (the loader says what is wrong)."""
    if spec.data.source != "file" or spec.data.path is None:
        return None
    try:
        times = [os.path.getmtime(p) for root in data_roots
                 if os.path.exists(p := os.path.join(root, spec.data.path))]
    except (OSError, ValueError):
        return None
    return max(times) if times else None
