"""One submission path for experiments and sweeps, a function per step, in this order:

1. schema: the request body parsed into the spec by the route (FastAPI, from the route's
   declared model: its OpenAPI schema and its 422s);
2. `static_checks`: what the spec alone shows (the settings its model kind declares);
3. `caps`: the service caps that need only the spec (epochs, GPUs, the size of a built-in
   dataset, a sweep's trials and dry runs);
4. `resources`: what it asks of the cluster, against the cluster's nodes;
5. `dry_run`: the data and the model, run a little (`dry_run.py`); a sweep's base, then its
   space: its paths and each of their values, checked like a submitted experiment, named
   together in one answer with the search's problems (`sweep_space.py`).

Nothing user-sized is allocated before the caps pass: steps 2-4 read only the spec, and the dry
run bounds the data and the parameters before it allocates them. A sweep goes through each step
with its base, whose refusals are named under `base`. Each step raises `SpecInvalid` (422) with
the field path and the fix.

`submit_experiment` and `submit_sweep` check and queue, for the routes; `check_experiment` and
`check_sweep` only check, without a cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, overload

from pydantic import ValidationError

from services import resources as cluster_fit
from services.caps import CapExceeded, SubmissionLimits, check_memory_cap, spec_cap_errors
from services.contract.applicability import declared_errors
from services.contract.expectations import CompareExpectation
from services.contract.spec import ExperimentSpec
from services.contract.spec_errors import SpecError, SpecInvalid
from services.contract.spec_hash import payload_hash
from services.contract.sweep_spec import SweepSpec
from services.records import JobRecord
from services.settings import Settings
from services.store import JobStore
from workers.data.registry import builtin_dataset, generated_size_error
from workers.submission import dry_run as dry_runs
from workers.submission.dry_run import DEFAULT_LIMITS, DryRun
from workers.submission.sweep_space import space_errors, work_errors

Spec = ExperimentSpec | SweepSpec
# Ray's names of the resources a spec asks for by field.
_FIELD_OF = {"CPU": ("cpus",), "GPU": ("gpus",)}


class Cluster(cluster_fit.Cluster, Protocol):
    """The dispatcher, as a submission sees it: the cluster's size, and a nudge to launch."""

    def wake(self) -> None: ...


@dataclass
class SweepCheck:
    sweep: SweepSpec  # with the base's dataset params filled in, as it will run
    trials: int


# -- entries -----------------------------------------------------------------------------------
def submit_experiment(spec: ExperimentSpec, *, store: JobStore, settings: Settings, owner: str,
                      cluster: Cluster | None, idempotency_key: str | None,
                      repair_of: str | None = None, repair_candidate: int | None = None,
                      parent_run_id: str | None = None) -> tuple[JobRecord, bool]:
    """Check the experiment and queue it. Returns the record and whether it was created (not
    a repeat of an Idempotency-Key). A repair's link (the job it repairs, the candidate fix
    it tries, the MLflow run its run is a child of) goes to the job's own columns, which only
    the service writes (`workers/submission/repair.py`)."""
    with dry_runs.DRY_RUNS.slot():  # the caller took `DRY_RUNS.admitted()` where it arrived
        dry = check_experiment(spec, settings.data_root_list, SubmissionLimits.of(settings),
                               cluster)
    record, created = store.create(
        spec=dry.spec.model_dump(mode="json"), spec_hash=dry.spec.spec_hash(),
        name=dry.spec.name, project=dry.spec.project, priority=dry.spec.priority,
        owner=owner, idempotency_key=idempotency_key, param_count=dry.param_count,
        max_queued=settings.max_queued_per_owner, repair_of=repair_of,
        repair_candidate=repair_candidate, parent_run_id=parent_run_id,
        memory_estimate=dry.memory.as_record())
    if created and dry.data_diagnosis is not None:  # bad_data the data alone shows
        record = store.update(record.id, diagnosis=dry.data_diagnosis)
    if created and cluster is not None:
        cluster.wake()
    return record, created


def submit_sweep(sweep: SweepSpec, *, store: JobStore, settings: Settings, owner: str,
                 cluster: Cluster | None, idempotency_key: str | None
                 ) -> tuple[JobRecord, bool]:
    """Check the sweep (every path, every listed value on the base) and queue it."""
    with dry_runs.DRY_RUNS.slot():
        checked = check_sweep(sweep, settings.data_root_list, SubmissionLimits.of(settings),
                              cluster)
    payload = checked.sweep.model_dump(mode="json")
    record, created = store.create(
        spec=payload, spec_hash=payload_hash(payload), name=checked.sweep.display_name,
        project=checked.sweep.mlflow_project, priority=checked.sweep.priority,
        owner=owner, job_type="sweep", idempotency_key=idempotency_key, sweep_id=None)
    if created:
        record = store.update(record.id, result={"trials_total": checked.trials, "trials": []})
        if cluster is not None:
            cluster.wake()
    return record, created


def check_experiment(spec: ExperimentSpec, data_roots: list[str],
                     limits: SubmissionLimits = DEFAULT_LIMITS,
                     cluster: cluster_fit.Cluster | None = None) -> DryRun:
    """The steps in order; returns the spec as it will run (dataset params filled in), and
    facts. Without a cluster, resources are not checked."""
    static_checks(spec)
    caps(spec, limits)
    resources(spec, cluster)
    dry = dry_run(spec, data_roots, limits)
    memory_fits(dry, limits, cluster)
    return dry


def memory_fits(dry: DryRun, limits: SubmissionLimits, cluster: cluster_fit.Cluster | None
                ) -> None:
    """The peak the dry run measured against the cap and, with a cluster, its largest node
    (one task trains on one node)."""
    check_memory_cap(dry.memory, limits,
                     None if cluster is None else cluster.largest_node().get("memory"))


def check_sweep(sweep: SweepSpec, data_roots: list[str],
                limits: SubmissionLimits = DEFAULT_LIMITS,
                cluster: cluster_fit.Cluster | None = None) -> SweepCheck:
    """The steps in order; returns the sweep as it will run."""
    static_checks(sweep)
    caps(sweep, limits)
    resources(sweep, cluster)
    return dry_run(sweep, data_roots, limits, cluster)


# -- steps -------------------------------------------------------------------------------------
def static_checks(spec: Spec) -> None:
    """Settings switched on that the model kind does not declare (in `supports`)."""
    errors = (_under_base(declared_errors(spec.base)) if isinstance(spec, SweepSpec)
              else declared_errors(spec))
    if errors:
        raise SpecInvalid(errors)


def caps(spec: Spec, limits: SubmissionLimits) -> None:
    """The caps that need only the spec; a sweep's work (trials, dry runs) first."""
    if isinstance(spec, SweepSpec):
        work = work_errors(spec, limits)
        if work:
            raise CapExceeded(work)
        with _as_base():
            caps(spec.base, limits)
        return
    errors = spec_cap_errors(spec, limits) + _generated_size_errors(spec, limits)
    if errors:
        raise CapExceeded(errors)


def resources(spec: Spec, cluster: cluster_fit.Cluster | None) -> None:
    """Refuse what no node of the cluster could ever run (a task runs on one node), and
    data-parallel workers that together exceed the cluster."""
    if cluster is None:
        return
    if isinstance(spec, SweepSpec):
        with _as_base():
            resources(spec.base, cluster)
        return
    asked = spec.resources.model_dump()
    node, largest = cluster_fit.node_ask(asked), cluster.largest_node()
    errors = [SpecError(("resources", *_FIELD_OF.get(name, ("custom", name))), (
        f"asks for {node[name]:g} {name} but the largest node in the cluster has "
        f"{largest.get(name, 0.0):g}; lower it or add a node that has it"))
        for name in cluster_fit.beyond_node(node, largest)]
    workers = spec.resources.workers
    if workers > 1:  # each worker fits a node; together they must fit the cluster
        run, capacity = cluster_fit.run_ask(asked), cluster.capacity()
        short = cluster_fit.beyond_cluster(run, capacity)
        errors += [SpecError(("resources", "workers"), (
            f"{workers} workers x {node[name]:g} {name} need {run[key]:g} {name} but "
            f"the cluster has {capacity[key]:g}; lower resources.workers or resources.{key}"))
            for key, name in (("cpus", "CPU"), ("gpus", "GPU")) if key in short]
    if errors:
        raise SpecInvalid(errors)


@overload
def dry_run(spec: ExperimentSpec, data_roots: list[str], limits: SubmissionLimits,
            cluster: cluster_fit.Cluster | None = None) -> DryRun:
    ...


@overload
def dry_run(spec: SweepSpec, data_roots: list[str], limits: SubmissionLimits,
            cluster: cluster_fit.Cluster | None = None) -> SweepCheck:
    ...


def dry_run(spec: Spec, data_roots: list[str], limits: SubmissionLimits,
            cluster: cluster_fit.Cluster | None = None) -> DryRun | SweepCheck:
    """An experiment's data and model, run a little; a sweep's base, then its space, each
    trial's memory against the cluster's largest node too (`cluster`: a sweep's)."""
    if isinstance(spec, ExperimentSpec):
        dry = dry_runs.dry_run(spec, data_roots, limits)
        _raise_any(expect_errors(spec.expect, dry))
        return dry
    with _as_base():
        dry = dry_runs.dry_run(spec.base, data_roots, limits)
        _raise_any(expect_errors(spec.base.expect, dry))
        memory_fits(dry, limits, cluster)
    sweep = spec.model_copy(update={"base": dry.spec})
    errors = space_errors(sweep, dry, lambda trial: check_experiment(trial, data_roots, limits,
                                                                     cluster))
    errors += expect_errors(spec.expect, dry, space=set(spec.space))
    if errors:
        raise SpecInvalid(errors)
    return SweepCheck(sweep, sweep.trial_count())


def expect_errors(expect: list[Any], dry: DryRun, *, space: set[str] | None = None
                  ) -> list[SpecError]:
    """An expectation on a metric the run will not log, or selecting trials by a path the
    sweep's space does not vary (`space`: a sweep's expect), cannot hold: refused."""
    keys = None if dry.metrics is None else dry.metrics.of_run(dry.spec)
    errors = []
    for i, item in enumerate(expect):
        fields: dict[str, Any] = item.model_dump()
        if "compare" in fields:
            fields = {"metric": fields["compare"]["metric"], **{
                f"compare.{side}": fields["compare"][side] for side in ("better", "worse")}}
        loc: tuple[str | int, ...] = ("expect", i, *(
            ["compare"] if isinstance(item, CompareExpectation) else []))
        if keys is not None and "metric" in fields and fields["metric"] not in keys:
            errors.append(SpecError((*loc, "metric"), (
                f"{fields['metric']!r} is not a metric this run logs; it logs {keys}")))
        for name in ("where", "compare.better", "compare.worse"):
            unknown = sorted(set(fields.get(name) or {}) - (space or set()))
            if unknown and space is not None:
                errors.append(SpecError((*loc, name.rsplit(".", 1)[-1]), (
                    f"{', '.join(unknown)} is not a path of the sweep's space "
                    f"({', '.join(sorted(space))}); select trials by the values it varies")))
    return errors


def _raise_any(errors: list[SpecError]) -> None:
    if errors:
        raise SpecInvalid(errors)


# -- helpers -----------------------------------------------------------------------------------
def _generated_size_errors(spec: ExperimentSpec, limits: SubmissionLimits) -> list[SpecError]:
    """A built-in dataset's size follows from its params: capped before it is generated."""
    entry = builtin_dataset(spec.data.name or "") if spec.data.source == "builtin" else None
    if entry is None:
        return []
    try:
        params = entry.params_cls.model_validate(spec.data.params)
    except ValidationError:
        return []  # the dry run's loader names the field
    problem = generated_size_error(entry.name, params, limits.max_data_bytes)
    return [] if problem is None else [SpecError(("data", "params"), problem)]


def _under_base(errors: list[SpecError]) -> list[SpecError]:
    return [SpecError(("base", *e.loc), e.msg) for e in errors]


@contextmanager
def _as_base() -> Iterator[None]:
    """A sweep's base refused under `base`, the field path in the sweep."""
    try:
        yield
    except SpecInvalid as exc:
        raise type(exc)(_under_base(exc.errors)) from exc

