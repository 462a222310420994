"""The dry run, the pipeline's last step (`pipeline.py`): what a spec cannot run is found by
running it a little, in the API process, after the caps have passed.

In this order, so that nothing a spec asks for is allocated before its size is known:
1. the data, loaded as a worker loads it (`workers.prepare`), a file's size bounded before it
   is read, its values and labels checked (and the classes they make capped) once read, and
   its training split measured (workers/data/statistics.py): data that cannot train is
   refused, the other `bad_data` findings go to the record (`DryRun.data_diagnosis`);
2. the model built on PyTorch's meta device (shapes, no memory, no arithmetic): its parameter
   count against the parameter cap;
3. one small batch forward (and backward) on the CPU, for models up to
   `max_dry_run_parameters`; larger ones go through the step on the meta device (shapes only).
   What the step kept, scaled to the spec's batch, makes the job's peak memory with the
   parameters, gradients, optimizer state and data (`caps.JobMemory`), against the memory cap
   (and, in the pipeline, the memory of the cluster's largest node).

A spec that cannot run is refused with 422 before it is queued, with the field path and the fix.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass, replace
from typing import Any

import torch
from cachetools import LRUCache

from models.objectives import ObjectiveError
from services.caps import JobMemory, SubmissionLimits
from services.contract.spec import ExperimentSpec
from services.contract.spec_errors import SpecError, SpecInvalid
from services.contract.spec_hash import payload_hash
from workers.data import DataBundle, DataError, TaskMismatch
from workers.data.registry import builtin_dataset
from workers.data.statistics import measure as measure_data
from workers.diagnostics.verdicts.data_faults import submission_diagnosis
from workers.prepare import data_key, data_mtime, load_bundle, objective_of
from workers.submission.analysis_checks import analysis_problems
from workers.submission.applicability_checks import (
    data_errors,
    model_errors,
    objective_refusals,
    task_refusals,
    untrainable_data,
)
from workers.submission.model_step import LoggedMetrics, dry_run_batch, stepped_model

_PASSED_CACHE_SIZE = 1024
_passed_cache: LRUCache[str, DryRun] = LRUCache(maxsize=_PASSED_CACHE_SIZE)
_passed_lock = threading.Lock()  # cachetools is not thread-safe
DEFAULT_LIMITS = SubmissionLimits()


@dataclass
class DryRun:
    spec: ExperimentSpec
    param_count: int
    task: str
    memory: JobMemory
    metrics: LoggedMetrics | None = None  # None: the step needed values it did not have
    # The bad_data findings the training split alone shows (data_faults), for the record at
    # submission; None: none.
    data_diagnosis: dict[str, Any] | None = None


# The fields of a spec its dry run does not read, so that specs differing only in them get the
# same answer: its name, tags and priority (which the spec hash leaves out too) and
# training.seed (the step draws its own numbers; the data's seed is data.params.seed). The one
# list: a sweep's check counts and dry-runs one configuration per distinct key
# (sweep_space.py), so a grid of 64 seeds is one dry run.
_NOT_READ: dict[str, Any] = {"name": True, "tags": True, "priority": True,
                             "training": {"seed": True}}


def dry_run_key(spec: ExperimentSpec) -> str:
    """What of `spec` its dry run's answer depends on: specs with equal keys pass or fail
    alike (on the same data files and limits)."""
    return payload_hash(spec.model_dump(mode="json", exclude=_NOT_READ))


def dry_run(spec: ExperimentSpec, data_roots: list[str], limits: SubmissionLimits) -> DryRun:
    """Raises SpecInvalid; returns the spec with dataset params filled in, and facts.

    A spec that passed is remembered by its `dry_run_key`, its data files' times and the
    limits: the same spec submitted again, or with another seed, as sweeps of seeds and
    repeated submissions do, skips building the model (most of a submission's cost)."""
    key = json.dumps([dry_run_key(spec), data_roots, data_mtime(spec, data_roots),
                      astuple(limits)])
    with _passed_lock:  # the API checks submissions on a thread pool
        passed = _passed_cache.get(key)  # now the most recently used
    if passed is not None:
        return replace(passed, spec=spec.model_copy(update={"data": passed.spec.data}))
    dry = _dry_run(spec, data_roots, limits)
    with _passed_lock:
        _passed_cache[key] = dry  # the least recently used goes past _PASSED_CACHE_SIZE
    return dry


class DryRunsBusy(Exception):
    """As many submissions as the service takes at once are being checked (HTTP 503 with
    Retry-After): the request was not looked at, and the same request can be resent."""

    def __init__(self, admitted: int):
        super().__init__(f"{admitted} submissions are being checked or waiting for a dry run, "
                         "as many as this service takes at once; nothing was stored. Retry "
                         "after the Retry-After seconds (with the same Idempotency-Key it is "
                         "stored once)")


class DryRunPool:
    """Bounds the dry runs: at most `running` at once (each on one torch thread), at most
    `running + waiting` submissions admitted (running or waiting for a slot); one more is
    refused at once with `DryRunsBusy` instead of queueing without bound.

    `admitted()` is taken first, where the request arrives (before it waits for a thread),
    `slot()` around the dry run itself. Dry runs that run side by side in one process share
    its interpreter lock, and torch's threads spin against each other on a busy machine: on
    2 cores a small model's step took 42 ms on two torch threads against 4.5 ms on one
    (BENCHMARKS.md).
    """

    def __init__(self, running: int, waiting: int):
        self.running, self.limit = running, running + waiting
        self._slots = threading.BoundedSemaphore(running)
        self._lock = threading.Lock()
        self._admitted = 0

    @contextmanager
    def admitted(self) -> Iterator[None]:
        """Raises DryRunsBusy when `running + waiting` submissions are admitted already."""
        with self._lock:
            if self._admitted >= self.limit:
                raise DryRunsBusy(self._admitted)
            self._admitted += 1
        try:
            yield
        finally:
            with self._lock:
                self._admitted -= 1

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Waits for one of the `running` slots."""
        with self._slots:
            if torch.get_num_threads() != 1:  # the dry run's batch is a few examples
                torch.set_num_threads(1)
            yield


# Two dry runs at once per CPU keep the CPUs busy while one waits for the store; 512 waiting
# bounds what a burst holds (a parsed spec each) and still takes hundreds of clients at once.
DRY_RUNS = DryRunPool(running=max(2, os.cpu_count() or 1), waiting=512)


def _dry_run(spec: ExperimentSpec, data_roots: list[str], limits: SubmissionLimits) -> DryRun:
    bundle = _load(spec, data_roots, limits)
    has_val = len(bundle.x_val) > 0
    errors = data_errors(spec, bundle.x_train, has_val, vocab_size=bundle.extra.get("vocab_size"))
    data_diagnosis = submission_diagnosis(measure_data(bundle, spec.data.standardize), spec)
    errors += untrainable_data(spec, data_diagnosis)
    try:
        objective = objective_of(spec, bundle)
    except ObjectiveError as exc:  # named at the field whose change fits the data
        fitting = objective_refusals(spec, bundle.task, bundle.output_dim)
        raise SpecInvalid([*errors, *(fitting or [SpecError(exc.loc, exc.msg)])]) from exc
    try:
        step = stepped_model(spec, bundle, objective, limits,
                             data_key=data_key(spec, data_roots))
    except SpecInvalid as exc:
        raise type(exc)([*errors, *exc.errors]) from exc
    facts = step.facts(spec, has_val=has_val)
    errors += model_errors(spec, step.model, facts)
    if facts.metric_keys is not None:  # the analyses' checks run the model too
        x, _ = dry_run_batch(spec, bundle, step.on_meta)
        errors += [SpecError(loc, msg) for loc, msg in analysis_problems(
            spec, step.model, bundle.shape(), x, has_val=has_val)]
    if errors:
        raise SpecInvalid(_first_per_field(errors))
    return DryRun(_with_dataset_defaults(spec), step.param_count, bundle.task,
                  step.footprint.memory(spec, bundle), step.logged(spec),
                  data_diagnosis.as_dict() if data_diagnosis is not None else None)


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


def _load(spec: ExperimentSpec, data_roots: list[str], limits: SubmissionLimits
          ) -> DataBundle:
    try:
        return load_bundle(spec, data_roots, limits.max_data_bytes,
                           max_classes=limits.max_classes)
    except TaskMismatch as exc:  # the output and loss that fit the data, then the task
        raise SpecInvalid([*task_refusals(spec, exc.natural, exc.classes),
                           SpecError(exc.loc, exc.msg)]) from exc
    except DataError as exc:
        raise SpecInvalid([SpecError(exc.loc, exc.msg)]) from exc
