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

from pydantic import ValidationError

from models.objectives import Objective, ObjectiveError
from services.byte_cache import ByteBoundedCache
from services.caps import CapExceeded, SubmissionLimits, spec_cap_errors
from services.contract.applicability import data_errors, declared_errors, model_errors
from services.contract.spec import ExperimentSpec
from services.contract.spec_errors import SpecError, SpecInvalid
from workers.data import DataBundle, DataError, load_data
from workers.data.registry import builtin_dataset, generated_size_error
from workers.submission.analysis_checks import analysis_problems
from workers.submission.model_step import dry_run_batch, stepped_model

__all__ = ["DryRun", "SpecError", "SpecInvalid", "check_experiment"]

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
    try:
        step = stepped_model(spec, bundle, objective, limits, data_key=_data_key(spec, data_roots))
    except SpecInvalid as exc:
        raise type(exc)([*errors, *exc.errors]) from exc
    facts = step.facts(spec, has_val=len(bundle.x_val) > 0)
    errors += model_errors(spec, step.model, facts)
    if facts.metric_keys is not None:  # the analyses' checks run the model too
        x, _ = dry_run_batch(spec, bundle, step.on_meta)
        errors += [SpecError(loc, msg) for loc, msg in analysis_problems(
            spec, step.model, bundle.shape(), x, has_val=len(bundle.x_val) > 0)]
    if errors:
        raise SpecInvalid(_first_per_field(errors))
    return DryRun(_with_dataset_defaults(spec), step.param_count, bundle.task)


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


def _data_key(spec: ExperimentSpec, data_roots: list[str]) -> str:
    return json.dumps([spec.data.model_dump(mode="json"), spec.task, data_roots,
                       _mtime(spec, data_roots)], sort_keys=True)


def _load(spec: ExperimentSpec, data_roots: list[str], max_bytes: int) -> DataBundle:
    key = _data_key(spec, data_roots)
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
