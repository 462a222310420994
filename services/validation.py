"""Submission-time checks that need the data or the built model: the dry run.

In this order, so that nothing a spec asks for is allocated before the caps pass:
1. the caps that need only the spec (epochs, GPUs);
2. the data, whose size is bounded before it is generated or read;
3. the model built on PyTorch's meta device (shapes, no memory, no arithmetic): its parameter
   count against the parameter cap;
4. one small batch forward (and backward) on the CPU, for models up to
   `max_dry_run_parameters`; larger ones go through the step on the meta device (shapes only).

A spec that cannot run is refused with 422 before it is queued, with the field path and the fix.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import astuple, dataclass
from typing import Any

import torch
from pydantic import ValidationError

from models import build_model
from models.base import LayerwiseModel, ModelConfigError
from models.objectives import Objective, ObjectiveError
from models.registry import family
from services.applicability import ForwardFacts, data_errors, declared_errors, model_errors
from services.byte_cache import ByteBoundedCache
from services.caps import CapExceeded, SubmissionLimits, check_parameter_cap, spec_cap_errors
from services.spec import ExperimentSpec
from services.spec_errors import SpecError, SpecInvalid
from workers.analysis.checks import analysis_problems
from workers.data import DataBundle, DataError, load_data
from workers.data.registry import builtin_dataset, generated_size_error
from workers.loop import summarize

__all__ = ["DryRun", "SpecError", "SpecInvalid", "check_experiment"]

DRY_RUN_EXAMPLES = 8
DRY_RUN_STEPS = 16
# Datasets the dry runs loaded, kept for the next submission on the same data: bounded in
# bytes, since one entry can be a user's file of hundreds of MB.
DATA_CACHE_BYTES = 256_000_000
_data_cache: ByteBoundedCache[str, DataBundle] = ByteBoundedCache(
    DATA_CACHE_BYTES, size_of=lambda bundle: bundle.nbytes, max_items=32)
_PASSED_CACHE_SIZE = 1024
_passed_cache: OrderedDict[str, DryRun] = OrderedDict()
_passed_lock = threading.Lock()
DEFAULT_LIMITS = SubmissionLimits()


@dataclass
class DryRun:
    spec: ExperimentSpec
    param_count: int
    task: str


def check_experiment(spec: ExperimentSpec, data_roots: list[str],
                     limits: SubmissionLimits = DEFAULT_LIMITS) -> DryRun:
    """Raises SpecInvalid; returns the spec with dataset params filled in, and facts.

    A spec that passed is remembered by its hash (name, tags and priority do not change what
    runs), its data files' times and the limits: the same spec submitted again, as sweeps of
    seeds and repeated submissions do, skips building the model (most of a submission's
    cost)."""
    cap_errors = spec_cap_errors(spec, limits)
    if cap_errors:
        raise CapExceeded(cap_errors)
    key = json.dumps([spec.spec_hash(), data_roots, _mtime(spec, data_roots), astuple(limits)])
    with _passed_lock:  # the API checks submissions on a thread pool
        passed = _passed_cache.get(key)
        if passed is not None:
            _passed_cache.move_to_end(key)
    if passed is not None:
        return DryRun(spec.model_copy(update={"data": passed.spec.data}), passed.param_count,
                      passed.task)
    dry = _dry_run(spec, data_roots, limits)
    with _passed_lock:
        _passed_cache[key] = dry
        if len(_passed_cache) > _PASSED_CACHE_SIZE:
            _passed_cache.popitem(last=False)
    return dry


def _dry_run(spec: ExperimentSpec, data_roots: list[str], limits: SubmissionLimits) -> DryRun:
    bundle = _load(spec, data_roots, limits.max_data_bytes)
    errors = (declared_errors(spec) + data_errors(spec, bundle.x_train, len(bundle.x_val) > 0)
              + _token_noise_errors(spec, bundle))
    try:
        objective = Objective.resolve(bundle.task, getattr(spec.model, "output", "auto"),
                                      spec.loss)
    except ObjectiveError as exc:
        raise SpecInvalid([*errors, SpecError(exc.loc, exc.msg)]) from exc
    model = _build(spec, bundle, errors, device="meta")
    param_count = sum(p.numel() for p in model.parameters())
    check_parameter_cap(param_count, limits)
    on_meta = param_count > limits.max_dry_run_parameters
    if not on_meta:
        model = _build(spec, bundle, errors, device="cpu")
    facts = _forward_one_batch(spec, model, objective, bundle, on_meta=on_meta)
    errors += model_errors(spec, model, facts)
    if facts.metric_keys is not None:  # the analyses' checks run the model too
        x, _ = _batch(spec, bundle, on_meta)
        errors += [SpecError(loc, msg) for loc, msg in analysis_problems(
            spec, model, bundle.shape(), x, has_val=len(bundle.x_val) > 0)]
    if errors:
        raise SpecInvalid(_first_per_field(errors))
    return DryRun(_with_dataset_defaults(spec), param_count, bundle.task)


def _build(spec: ExperimentSpec, bundle: DataBundle, errors: list[SpecError], *, device: str
           ) -> LayerwiseModel:
    """The model on `device`. On "meta" its tensors have shapes and no storage: a model of
    any size costs the API nothing, and its parameters can be counted before the cap."""
    try:
        with torch.device(device):
            return build_model(spec.model, bundle.shape(), dropout=spec.regularization.dropout)
    except ModelConfigError as exc:
        raise SpecInvalid([*errors, SpecError(("model", *exc.loc), exc.msg)]) from exc
    except (RuntimeError, ValueError, IndexError, TypeError, OverflowError) as exc:
        # torch's own refusal (a negative or huge dimension, a size that does not divide)
        raise SpecInvalid([*errors, SpecError(("model",), (
            f"this model config cannot be built for this data (input shape "
            f"{bundle.shape().input_shape}): {str(exc)[:300]}"))]) from exc


def _batch(spec: ExperimentSpec, bundle: DataBundle, on_meta: bool
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """A few training examples as the dry run feeds them: on the meta device for a large
    model, and cut to the first DRY_RUN_STEPS steps for a model that reads any length (a dry
    run through 10,000 steps took the API minutes)."""
    x = torch.as_tensor(bundle.x_train[:DRY_RUN_EXAMPLES])
    y = torch.as_tensor(bundle.y_train[:DRY_RUN_EXAMPLES])
    if family(spec.model.kind).any_length and x.ndim >= 2 and x.shape[1] > DRY_RUN_STEPS:
        if y.ndim >= 2 and y.shape[1] == x.shape[1]:  # many-to-many: a target per step
            y = y[:, :DRY_RUN_STEPS]
        x = x[:, :DRY_RUN_STEPS]
    return (torch.empty_like(x, device="meta") if on_meta else x), y


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


def _load(spec: ExperimentSpec, data_roots: list[str], max_bytes: int) -> DataBundle:
    key = json.dumps([spec.data.model_dump(mode="json"), spec.task, data_roots,
                      _mtime(spec, data_roots)], sort_keys=True)
    bundle = _data_cache.get(key)
    if bundle is not None:
        return bundle
    _refuse_large_generation(spec, max_bytes)
    try:
        bundle = load_data(spec.data, spec.task, data_roots, max_bytes=max_bytes)
    except DataError as exc:
        raise SpecInvalid([SpecError(exc.loc, exc.msg)]) from exc
    _data_cache.put(key, bundle)
    return bundle


def _refuse_large_generation(spec: ExperimentSpec, max_bytes: int) -> None:
    """A built-in dataset's size follows from its params: refused before it is generated."""
    entry = builtin_dataset(spec.data.name or "") if spec.data.source == "builtin" else None
    if entry is None:
        return
    try:
        params = entry.params_cls.model_validate(spec.data.params)
    except ValidationError:
        return  # load_data names the field
    problem = generated_size_error(entry.name, params, max_bytes)
    if problem is not None:
        raise CapExceeded([SpecError(("data", "params"), problem)])


def _mtime(spec: ExperimentSpec, data_roots: list[str]) -> float | None:
    if spec.data.source != "file" or spec.data.path is None:
        return None
    try:
        times = [os.path.getmtime(p) for root in data_roots
                 if os.path.exists(p := os.path.join(root, spec.data.path))]
    except (OSError, ValueError):  # the loader says what is wrong with the path
        return None
    return max(times) if times else None


def _token_noise_errors(spec: ExperimentSpec, bundle: DataBundle) -> list[SpecError]:
    tokens = bool(bundle.extra.get("vocab_size")) and bundle.x_train.ndim == 2  # (N, T) ids
    if spec.regularization.input_noise_std > 0 and tokens:
        return [SpecError(("regularization", "input_noise_std"),
                          "this data's inputs are token ids, which Gaussian noise would turn "
                          "into other tokens; set input_noise_std: 0 (use dropout instead)")]
    return []


def _forward_one_batch(spec: ExperimentSpec, model: Any, objective: Objective,
                       bundle: DataBundle, *, on_meta: bool) -> ForwardFacts:
    """One training step's forward (and backward) on a few examples, as the loop runs it.

    Returns what the step showed: hidden activations, and the metric keys the loop will log.
    On the meta device the metrics are computed on zeros of the output's shape (their keys
    do not depend on the values); a step that needs values there (an energy model's
    dynamics) leaves the metric keys unknown.
    """
    x, y = _batch(spec, bundle, on_meta)
    try:
        target = torch.empty_like(y, device="meta") if on_meta else y
        if model.uses_gradients:
            out = model.training_step(x, target, objective)
            if not on_meta:  # on meta the backward mirrors the forward's shapes, at ~3x its cost
                out["loss"].backward()
        else:
            with torch.no_grad():
                out = model.training_step(x, target, objective)
        output = out["output"].detach()
        if on_meta:
            output = torch.zeros(output.shape, dtype=output.dtype)
        sums = objective.metrics(output, y)
    except NotImplementedError:
        if not on_meta:
            raise
        return ForwardFacts(has_hidden=bool(model.hidden_activations()), metric_keys=None)
    except (RuntimeError, ValueError, IndexError) as exc:
        raise SpecInvalid([SpecError(("model",), f"the model cannot run on this data "
                                                 f"(input shape {tuple(x.shape[1:])}): "
                                                 f"{str(exc)[:300]}")]) from exc
    names = [key.split("/", 1)[1]  # loss, accuracy, ...
             for key in summarize("train", sums, task=objective.task)]
    splits = ["train", "val"] if len(bundle.x_val) else ["train"]
    keys = {f"{split}/{name}" for split in splits for name in names}
    reg = spec.regularization
    if model.uses_gradients and (reg.l1 or reg.l2 or reg.activity_l1 or reg.activity_l2):
        keys.add("train/penalty")
    return ForwardFacts(has_hidden=bool(model.hidden_activations()), metric_keys=frozenset(keys))
