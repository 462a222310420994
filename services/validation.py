"""Submission-time checks that need the data or the built model: the dry run.

The model is built and one small batch goes forward (and backward) on the CPU, so a spec that
cannot run is refused with 422 before it is queued, with the field path and the fix.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

from models import build_model
from models.base import ModelConfigError
from models.objectives import Objective, ObjectiveError
from models.registry import family
from services.spec import ExperimentSpec
from workers.analysis.checks import analysis_problems
from workers.data import DataBundle, DataError, load_data
from workers.data.registry import builtin_dataset

DRY_RUN_EXAMPLES = 8
_CACHE_SIZE = 32
_data_cache: OrderedDict[str, DataBundle] = OrderedDict()

# Settings a kind must declare in `supports` before they may be switched on.
_OPTIONAL_SETTINGS = {
    "dropout": (("regularization", "dropout"), lambda s: s.regularization.dropout > 0),
    "activity_regularization": (
        ("regularization", "activity_l1"),
        lambda s: s.regularization.activity_l1 > 0 or s.regularization.activity_l2 > 0),
    "input_noise": (("regularization", "input_noise_std"),
                    lambda s: s.regularization.input_noise_std > 0),
}


@dataclass
class SpecError:
    loc: tuple[str | int, ...]
    msg: str


class SpecInvalid(ValueError):
    """A spec that parses but cannot run; `errors` name each field and the fix."""

    def __init__(self, errors: list[SpecError]):
        super().__init__("; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors))
        self.errors = errors


@dataclass
class DryRun:
    spec: ExperimentSpec
    param_count: int
    task: str


def check_experiment(spec: ExperimentSpec, data_roots: list[str]) -> DryRun:
    """Raises SpecInvalid; returns the spec with dataset params filled in, and facts."""
    bundle = _load(spec, data_roots)
    errors = (_unsupported_settings(spec) + _monitor_errors(spec, bundle)
              + _token_noise_errors(spec, bundle))
    if errors:
        raise SpecInvalid(errors)
    try:
        objective = Objective.resolve(bundle.task, getattr(spec.model, "output", "auto"),
                                      spec.loss)
        model = build_model(spec.model, bundle.shape(), dropout=spec.regularization.dropout)
    except ObjectiveError as exc:
        raise SpecInvalid([SpecError(exc.loc, exc.msg)]) from exc
    except ModelConfigError as exc:
        raise SpecInvalid([SpecError(("model", *exc.loc), exc.msg)]) from exc
    _forward_one_batch(model, objective, bundle)
    if problems := analysis_problems(spec, model, bundle.shape(), torch.as_tensor(
            bundle.x_train[:DRY_RUN_EXAMPLES]), has_val=len(bundle.x_val) > 0):
        raise SpecInvalid([SpecError(loc, msg) for loc, msg in problems])
    return DryRun(_with_dataset_defaults(spec), sum(p.numel() for p in model.parameters()),
                  bundle.task)


def _with_dataset_defaults(spec: ExperimentSpec) -> ExperimentSpec:
    """The spec as it will run: a built-in dataset's params with their defaults filled in, so
    that the stored record and the MLflow params say exactly what was generated."""
    entry = builtin_dataset(spec.data.name or "") if spec.data.source == "builtin" else None
    if entry is None:
        return spec
    params = entry.params_cls.model_validate(spec.data.params).model_dump(mode="json")
    return spec.model_copy(update={"data": spec.data.model_copy(update={"params": params})})


def _load(spec: ExperimentSpec, data_roots: list[str]) -> DataBundle:
    key = json.dumps([spec.data.model_dump(mode="json"), spec.task, data_roots,
                      _mtime(spec, data_roots)], sort_keys=True)
    if key in _data_cache:
        _data_cache.move_to_end(key)
        return _data_cache[key]
    try:
        bundle = load_data(spec.data, spec.task, data_roots)
    except DataError as exc:
        raise SpecInvalid([SpecError(exc.loc, exc.msg)]) from exc
    _data_cache[key] = bundle
    if len(_data_cache) > _CACHE_SIZE:
        _data_cache.popitem(last=False)
    return bundle


def _mtime(spec: ExperimentSpec, data_roots: list[str]) -> float | None:
    if spec.data.source != "file" or spec.data.path is None:
        return None
    times = [os.path.getmtime(p) for root in data_roots
             if os.path.exists(p := os.path.join(root, spec.data.path))]
    return max(times) if times else None


def _unsupported_settings(spec: ExperimentSpec) -> list[SpecError]:
    supports = family(spec.model.kind).supports
    return [SpecError(loc, f"model kind {spec.model.kind!r} does not support {setting}; "
                           "remove the setting or choose a kind that has it")
            for setting, (loc, is_on) in _OPTIONAL_SETTINGS.items()
            if is_on(spec) and setting not in supports]


def _token_noise_errors(spec: ExperimentSpec, bundle: DataBundle) -> list[SpecError]:
    tokens = bool(bundle.extra.get("vocab_size")) and bundle.x_train.ndim == 2  # (N, T) ids
    if spec.regularization.input_noise_std > 0 and tokens:
        return [SpecError(("regularization", "input_noise_std"),
                          "this data's inputs are token ids, which Gaussian noise would turn "
                          "into other tokens; set input_noise_std: 0 (use dropout instead)")]
    return []


def _monitor_errors(spec: ExperimentSpec, bundle: DataBundle) -> list[SpecError]:
    stopping = spec.regularization.early_stopping
    if stopping.patience is None:
        return []
    if stopping.monitor.startswith("val/") and len(bundle.x_val) == 0:
        return [SpecError(("regularization", "early_stopping", "monitor"),
                          f"{stopping.monitor} needs validation data; set data.val_fraction > 0")]
    logged = {"train/loss", "val/loss"}
    logged |= ({"train/accuracy", "val/accuracy"} if bundle.task not in ("regression", "sequence")
               else {"train/mse", "val/mse"})
    if bundle.task == "recall":  # recall logs both accuracy and mse
        logged |= {"train/mse", "val/mse"}
    if bundle.task == "language_model":
        logged |= {"train/perplexity", "val/perplexity"}
    if stopping.monitor not in logged:
        return [SpecError(("regularization", "early_stopping", "monitor"),
                          f"{stopping.monitor!r} is not logged for this run; "
                          f"choose one of {sorted(logged)}")]
    return []


def _forward_one_batch(model: Any, objective: Objective, bundle: DataBundle) -> None:
    x = torch.as_tensor(bundle.x_train[:DRY_RUN_EXAMPLES])
    y = torch.as_tensor(bundle.y_train[:DRY_RUN_EXAMPLES])
    try:
        out = model.training_step(x, y, objective) if model.uses_gradients else None
        if out is not None:
            out["loss"].backward()
    except (RuntimeError, ValueError, IndexError) as exc:
        raise SpecInvalid([SpecError(("model",), f"the model cannot run on this data "
                                                 f"(input shape {tuple(x.shape[1:])}): {exc}")]
                          ) from exc
