"""Submission-time checks that need the data or the built model: the dry run.

The model is built and one small batch goes forward (and backward) on the CPU, so a spec that
cannot run is refused with 422 before it is queued, with the field path and the fix.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

from models import build_model
from models.base import ModelConfigError
from models.objectives import Objective, ObjectiveError
from services.applicability import ForwardFacts, data_errors, declared_errors, model_errors
from services.spec import ExperimentSpec
from services.spec_errors import SpecError, SpecInvalid
from workers.analysis.checks import analysis_problems
from workers.data import DataBundle, DataError, load_data
from workers.data.registry import builtin_dataset
from workers.loop import summarize

__all__ = ["DryRun", "SpecError", "SpecInvalid", "check_experiment"]

DRY_RUN_EXAMPLES = 8
_CACHE_SIZE = 32
_data_cache: OrderedDict[str, DataBundle] = OrderedDict()
_PASSED_CACHE_SIZE = 1024
_passed_cache: OrderedDict[str, DryRun] = OrderedDict()
_passed_lock = threading.Lock()


@dataclass
class DryRun:
    spec: ExperimentSpec
    param_count: int
    task: str


def check_experiment(spec: ExperimentSpec, data_roots: list[str]) -> DryRun:
    """Raises SpecInvalid; returns the spec with dataset params filled in, and facts.

    A spec that passed is remembered by its hash (name, tags and priority do not change what
    runs) and its data files' times: the same spec submitted again, as sweeps of seeds and
    repeated submissions do, skips building the model (most of a submission's cost)."""
    key = json.dumps([spec.spec_hash(), data_roots, _mtime(spec, data_roots)])
    with _passed_lock:  # the API checks submissions on a thread pool
        passed = _passed_cache.get(key)
        if passed is not None:
            _passed_cache.move_to_end(key)
    if passed is not None:
        return DryRun(spec.model_copy(update={"data": passed.spec.data}), passed.param_count,
                      passed.task)
    dry = _dry_run(spec, data_roots)
    with _passed_lock:
        _passed_cache[key] = dry
        if len(_passed_cache) > _PASSED_CACHE_SIZE:
            _passed_cache.popitem(last=False)
    return dry


def _dry_run(spec: ExperimentSpec, data_roots: list[str]) -> DryRun:
    bundle = _load(spec, data_roots)
    errors = (declared_errors(spec) + data_errors(spec, bundle.x_train, len(bundle.x_val) > 0)
              + _token_noise_errors(spec, bundle))
    try:
        objective = Objective.resolve(bundle.task, getattr(spec.model, "output", "auto"),
                                      spec.loss)
        model = build_model(spec.model, bundle.shape(), dropout=spec.regularization.dropout)
    except ObjectiveError as exc:
        raise SpecInvalid([*errors, SpecError(exc.loc, exc.msg)]) from exc
    except ModelConfigError as exc:
        raise SpecInvalid([*errors, SpecError(("model", *exc.loc), exc.msg)]) from exc
    facts = _forward_one_batch(spec, model, objective, bundle)
    errors += model_errors(spec, model, facts)
    errors += [SpecError(loc, msg) for loc, msg in analysis_problems(
        spec, model, bundle.shape(), torch.as_tensor(bundle.x_train[:DRY_RUN_EXAMPLES]),
        has_val=len(bundle.x_val) > 0)]
    if errors:
        raise SpecInvalid(_first_per_field(errors))
    return DryRun(_with_dataset_defaults(spec), sum(p.numel() for p in model.parameters()),
                  bundle.task)


def _first_per_field(errors: list[SpecError]) -> list[SpecError]:
    seen: dict[tuple[str | int, ...], SpecError] = {}
    for error in errors:
        seen.setdefault(error.loc, error)
    return list(seen.values())


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


def _token_noise_errors(spec: ExperimentSpec, bundle: DataBundle) -> list[SpecError]:
    tokens = bool(bundle.extra.get("vocab_size")) and bundle.x_train.ndim == 2  # (N, T) ids
    if spec.regularization.input_noise_std > 0 and tokens:
        return [SpecError(("regularization", "input_noise_std"),
                          "this data's inputs are token ids, which Gaussian noise would turn "
                          "into other tokens; set input_noise_std: 0 (use dropout instead)")]
    return []


def _forward_one_batch(spec: ExperimentSpec, model: Any, objective: Objective,
                       bundle: DataBundle) -> ForwardFacts:
    """One training step's forward (and backward) on a few examples, as the loop runs it.

    Returns what the step showed: hidden activations, and the metric keys the loop will log.
    """
    x = torch.as_tensor(bundle.x_train[:DRY_RUN_EXAMPLES])
    y = torch.as_tensor(bundle.y_train[:DRY_RUN_EXAMPLES])
    try:
        if model.uses_gradients:
            out = model.training_step(x, y, objective)
            out["loss"].backward()
        else:
            with torch.no_grad():
                out = model.training_step(x, y, objective)
        sums = objective.metrics(out["output"].detach(), y)
    except (RuntimeError, ValueError, IndexError) as exc:
        raise SpecInvalid([SpecError(("model",), f"the model cannot run on this data "
                                                 f"(input shape {tuple(x.shape[1:])}): {exc}")]
                          ) from exc
    names = [key.split("/", 1)[1]  # loss, accuracy, ...
             for key in summarize("train", sums, task=objective.task)]
    splits = ["train", "val"] if len(bundle.x_val) else ["train"]
    keys = {f"{split}/{name}" for split in splits for name in names}
    reg = spec.regularization
    if model.uses_gradients and (reg.l1 or reg.l2 or reg.activity_l1 or reg.activity_l2):
        keys.add("train/penalty")
    return ForwardFacts(has_hidden=bool(model.hidden_activations()), metric_keys=frozenset(keys))
