"""The rules of a sweep that its base experiment does not have, for the steps of the submission
pipeline (`pipeline.py`): the work one submission may ask for is bounded (caps: the number of
trials and of dry runs) and, once the base has been dry-run, every path exists, every domain
can produce a spec that runs, and the search, scheduler and metric fit together.
Refusals are `SpecInvalid` (422) with the field path (`["space", "optimizer.lr"]`) and the fix.

Each listed value (grid, choice) is applied alone to the base spec and checked like a submitted
experiment; continuous domains are checked at their bounds. The caps (epochs, parameters) hold
for every probe and for the largest configuration of the space. A configuration is dry-run once
per distinct `dry_run_key`: values the dry run does not read (seeds, names, tags, priorities)
are validated but cost no dry run, in the check and in the cap on its dry runs.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from models.registry import model_kind
from services.caps import CapExceeded, SubmissionLimits
from services.contract.spec import ExperimentSpec
from services.contract.spec_errors import SpecError, SpecInvalid
from services.contract.sweep_spec import (
    PBT_FIXED_PREFIXES,
    ChoiceDomain,
    GridDomain,
    LogUniformDomain,
    QUniformDomain,
    RandIntDomain,
    SweepSpec,
    UniformDomain,
    model_fields_of,
)
from workers.submission.dry_run import DryRun, dry_run_key

Loc = tuple[str | int, ...]
_SPLITS = ("train", "val", "test")
# The checks a submitted experiment passes (static, caps, dry run), for the specs the space makes.
CheckExperiment = Callable[[ExperimentSpec], object]


def space_errors(sweep: SweepSpec, dry: DryRun, check: CheckExperiment) -> list[SpecError]:
    """What follows the base's dry run, in one answer: the search, scheduler and metric against
    the data's task and the metrics the loop logs; each path of the space, and each domain's
    probes; then the largest configuration. `sweep` has the base as it will run (`dry.spec`)."""
    errors = _search_errors(sweep, dry)
    kinds = _candidate_kinds(sweep)
    checked = {dry_run_key(sweep.base)}  # the base passed its dry run
    for path in sweep.space:
        problem = path_error(path, kinds)
        if problem is not None:
            errors.append(SpecError(("space", path), problem))
            continue
        errors += _domain_errors(sweep, path, kinds, check, checked)
    if not errors:
        errors += _largest_errors(sweep, kinds, check, checked)
    return errors


def work_errors(sweep: SweepSpec, limits: SubmissionLimits) -> list[SpecError]:
    """What one submission may ask for, counted before anything runs."""
    errors = []
    trials = sweep.trial_count()
    if trials > limits.max_trials_per_sweep:
        errors.append(SpecError(("search", "num_samples"), (
            f"the sweep would run {trials} trials (grid points x num_samples x repeat); the "
            f"cap is {limits.max_trials_per_sweep} (LAYERWISE_MAX_TRIALS_PER_SWEEP): fewer "
            "values, samples or repeats, or split the sweep")))
    cap = limits.max_sweep_dry_runs
    if 2 + sum(len(_probes(domain)) for domain in sweep.space.values()) <= cap:
        return errors  # within the cap even if every probe were a dry run of its own
    count = dry_run_count(sweep, stop_above=cap)
    if count.total > cap:
        counts = ", ".join([*(f"{path}: {n}" for path, n in count.per_path.items()),
                            *(["the largest configuration: 1"] if count.largest else [])])
        if count.uncounted:
            counts += f"; not counted further: {', '.join(count.uncounted)}"
        at_least = "at least " if count.uncounted else ""
        errors.append(SpecError(("space",), (
            f"checking this sweep takes {at_least}{count.total} dry runs (the base, each "
            "listed value, each range's ends and middle, the largest configuration; values a "
            "dry run cannot tell apart, such as seeds, count once; beyond the base: "
            f"{counts}); the cap is {cap} (LAYERWISE_MAX_SWEEP_DRY_RUNS): list fewer "
            "values, use a range (uniform, randint) for numbers, or split the sweep")))
    return errors


@dataclass
class DryRunCount:
    """The dry runs a sweep's check takes: one per distinct `dry_run_key` among the base, the
    probes of each path and the largest configuration. `per_path`: the keys each path adds
    beyond the base; `largest`: whether the largest configuration adds one; `uncounted`: the
    paths not looked at once the count passed the cap."""

    total: int
    per_path: dict[str, int]
    largest: bool = False
    uncounted: list[str] = field(default_factory=list)


def dry_run_count(sweep: SweepSpec, *, stop_above: int | None = None) -> DryRunCount:
    """The configurations the check dry-runs, counted by building each probe's spec (a value
    that fails validation is refused without a dry run). `stop_above`: stop after the path
    that takes the count past it (a space of many long lists costs at most one more path)."""
    kinds = _candidate_kinds(sweep)
    base = dry_run_key(sweep.base)
    keys, per_path = {base}, dict[str, int]()
    paths = list(sweep.space)
    valid = [path for path in paths if path_error(path, kinds) is None]  # others: refused
    for done, path in enumerate(paths):
        if stop_above is not None and len(keys) > stop_above:
            return DryRunCount(len(keys), per_path, uncounted=paths[done:])
        if path not in valid:
            per_path[path] = 0
            continue
        added = {key for _, value in _probes(sweep.space[path])
                 if (key := _key_of(sweep, {path: value}, kinds)) not in (None, base)}
        per_path[path] = len(added)
        keys |= added
    largest = _key_of(sweep, _largest(sweep, valid), kinds)
    if largest is None or largest in keys:
        return DryRunCount(len(keys), per_path)
    return DryRunCount(len(keys) + 1, per_path, largest=True)


# -- paths -----------------------------------------------------------------------------------
def _candidate_kinds(sweep: SweepSpec) -> list[str]:
    kinds: list[str] = [sweep.base.model.kind]
    domain = sweep.space.get("model.kind")
    if isinstance(domain, ChoiceDomain | GridDomain):
        kinds += [v for v in domain.values if isinstance(v, str) and v not in kinds]
    return [k for k in kinds if model_fields_of(k) is not None]


def path_error(path: str, kinds: list[str]) -> str | None:
    """Why `path` is not a spec field (None when it is). `model.<field>` must exist in at
    least one of the model kinds the sweep can produce."""
    parts = path.split(".")
    if not all(parts):
        return f"{path!r} has an empty segment; write paths like optimizer.lr"
    return _walk(ExperimentSpec, parts, kinds, [])


def _walk(cls: type[BaseModel], parts: list[str], kinds: list[str], seen: list[str]
          ) -> str | None:
    head, rest = parts[0], parts[1:]
    here = ".".join(seen) or "the spec"
    if head not in cls.model_fields:
        return f"{here} has no field {head!r}; its fields: {sorted(cls.model_fields)}"
    if cls is ExperimentSpec and head == "model":
        return _walk_model(rest, kinds)
    annotation = cls.model_fields[head].annotation
    section = _model_class(annotation)
    if section is not None:
        return _walk(section, rest, kinds, [*seen, head]) if rest else None
    if typing.get_origin(annotation) is dict or annotation is dict:
        return None  # free keys below (data.params, tags); the dry run checks the values
    if rest:
        return (f"{'.'.join([*seen, head])} is a value, not a section; "
                f"drop '.{'.'.join(rest)}'")
    return None


def _walk_model(rest: list[str], kinds: list[str]) -> str | None:
    if not rest:
        return "sweep a field below model, e.g. model.kind or model.activation"
    problems = []
    for kind in kinds:
        problem = _walk(model_kind(kind).config_cls, rest, kinds, ["model"])
        if problem is None:
            return None
        problems.append(f"kind {kind!r}: {problem}")
    return "no model kind this sweep can produce has it (" + "; ".join(problems) + ")"


def _model_class(annotation: Any) -> type[BaseModel] | None:
    candidates = typing.get_args(annotation) or (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


# -- search, scheduler, metric -----------------------------------------------------------------
def _search_errors(sweep: SweepSpec, dry: DryRun) -> list[SpecError]:
    errors = []
    search, scheduler = sweep.search, sweep.scheduler
    if search.algorithm == "grid":
        for path, domain in sweep.space.items():
            if not isinstance(domain, ChoiceDomain | GridDomain):
                errors.append(SpecError(("space", path), (
                    f"search.algorithm grid enumerates listed values; a {domain.type} domain "
                    "has none: use type: grid with values, or search.algorithm random or tpe")))
    if scheduler.name == "pbt":
        if search.algorithm == "tpe":
            errors.append(SpecError(("scheduler", "name"), (
                "pbt chooses the next values itself and cannot follow TPE; use "
                "search.algorithm random or grid with pbt, or another scheduler with tpe")))
        if not any(not p.startswith(PBT_FIXED_PREFIXES) for p in sweep.space):
            errors.append(SpecError(("scheduler", "name"), (
                "pbt perturbs training values (optimizer.*, regularization.*, "
                "training.batch_size, ...); the space has none: add one, e.g. optimizer.lr")))
        if scheduler.perturbation_interval >= sweep.base.training.epochs:
            errors.append(SpecError(("scheduler", "perturbation_interval"), (
                f"{scheduler.perturbation_interval} epochs between exploit steps leaves none in "
                f"{sweep.base.training.epochs} epochs; lower it or raise base.training.epochs")))
    if sweep.base.resources.workers > 1 or "resources.workers" in sweep.space:
        loc = ("base", "resources", "workers") if "resources.workers" not in sweep.space else (
            "space", "resources.workers")
        errors.append(SpecError(loc, (
            "a sweep trial trains on one worker (Tune runs trials side by side instead); "
            "remove resources.workers from the sweep")))
    problem = _metric_problem(sweep, dry)
    if problem is not None:
        errors.append(SpecError(("search", "metric"), problem))
    return errors


def _metric_problem(sweep: SweepSpec, dry: DryRun) -> str | None:
    metric = sweep.search.metric
    split, _, name = metric.partition("/")
    if metric == "lr":
        return None
    if split not in _SPLITS or not name:
        return (f"{metric!r} is not an epoch metric; use <split>/<name> with split train, val "
                "or test, e.g. val/accuracy or val/loss")
    logged = [] if dry.metrics is None else dry.metrics.keys([split])
    if logged and metric not in logged:
        listed = ", ".join(logged[:-1]) + " and " if len(logged) > 1 else ""
        return f"a {dry.task} run logs {listed}{logged[-1]}, not {metric!r}"
    data = sweep.base.data
    if split == "val" and data.source == "builtin" and data.val_fraction == 0:
        return f"{metric} needs validation data; set base.data.val_fraction > 0"
    if split == "test":
        if data.source == "builtin" and data.test_fraction == 0:
            return f"{metric} needs test data; set base.data.test_fraction > 0"
        if sweep.reports_every_epoch:
            return (f"test metrics exist only after training, but scheduler "
                    f"{sweep.scheduler.name} compares trials every epoch; use a val/ metric")
    return None


# -- values ----------------------------------------------------------------------------------
# A probe whose spec has the dry-run key of a configuration already checked (the base, an
# earlier probe) is validated field by field and not dry-run again: values that cannot change
# what a dry run checks (seeds, names, tags, priorities: `dry_run_key`) cost no dry run.
def _probes(domain: Any) -> list[tuple[str, Any]]:
    """(label, value) for each value of the domain that is dry-run at submission."""
    probes: list[tuple[str, Any]]
    if isinstance(domain, ChoiceDomain | GridDomain):
        probes = [(f"value {v!r} (values[{i}])", v) for i, v in enumerate(domain.values)]
    elif isinstance(domain, RandIntDomain):
        probes = [(f"low {domain.low}", domain.low), (f"high - 1 = {domain.high - 1}",
                                                      domain.high - 1)]
    elif isinstance(domain, QUniformDomain):
        lowest, highest = domain.extremes()
        probes = [(f"lowest value {lowest}", lowest), (f"highest value {highest}", highest)]
    elif isinstance(domain, UniformDomain | LogUniformDomain):
        middle = (domain.low + domain.high) / 2
        probes = [(f"low {domain.low}", domain.low), (f"high {domain.high}", domain.high),
                  (f"a value inside the range ({middle})", middle)]
    return probes


def _domain_errors(sweep: SweepSpec, path: str, kinds: list[str], check: CheckExperiment,
                   checked: set[str]) -> list[SpecError]:
    problems = []
    for label, value in _probes(sweep.space[path]):
        problem = _probe(sweep, {path: value}, kinds, check, checked)
        if problem is not None:
            problems.append(f"{label} gives a spec that cannot run: {problem}")
    return [SpecError(("space", path), "; ".join(problems))] if problems else []


def _largest(sweep: SweepSpec, paths: Iterable[str]) -> dict[str, Any]:
    """The largest configuration the space can produce: every numeric path at its largest
    value, every list-valued path at its longest (widest) list, together. Values that have no
    size (names, sections) stay as in the base; each was dry-run alone."""
    return {path: value for path in paths
            if (value := _largest_value(sweep.space[path])) is not None}


def _largest_errors(sweep: SweepSpec, kinds: list[str], check: CheckExperiment,
                    checked: set[str]) -> list[SpecError]:
    """The caps for the largest configuration (`_largest`)."""
    largest = _largest(sweep, sweep.space)
    if not largest:
        return []
    problem = _probe(sweep, largest, kinds, check, checked, caps_only=True)
    if problem is None:
        return []
    return [SpecError(("space",), f"the largest configuration of the space ({largest}) is "
                                  f"over a cap: {problem}")]


def _largest_value(domain: Any) -> Any:
    if isinstance(domain, ChoiceDomain | GridDomain):
        sizes = [(_size(v), i) for i, v in enumerate(domain.values)]
        if any(size is None for size, _ in sizes):
            return None
        return domain.values[max(sizes)[1]]
    if isinstance(domain, RandIntDomain):
        return domain.high - 1
    if isinstance(domain, QUniformDomain):
        return domain.extremes()[1]
    return domain.high  # uniform, loguniform


def _size(value: Any) -> tuple[float, float] | None:
    """How large a listed value makes a model or a run: a number by itself, a list by its
    length and then its sum (model.hidden: [512, 512] over [64])."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return (float(value), 0.0)
    if isinstance(value, list) and all(isinstance(v, int | float) and not isinstance(v, bool)
                                       for v in value):
        return (float(len(value)), float(sum(value)))
    return None


def _trial_spec(sweep: SweepSpec, values: dict[str, Any], kinds: list[str]
                ) -> ExperimentSpec:
    """The base with `values` applied (a model field swept alone takes a kind that has it).
    Raises ValidationError."""
    params: dict[str, Any] = dict(values)
    for path in values:
        if path.startswith("model.") and path != "model.kind" and "model.kind" not in values:
            name = path.split(".")[1]
            kind = next((k for k in kinds if name in (model_fields_of(k) or ())), None)
            if kind is not None:
                params["model.kind"] = kind
    return ExperimentSpec.model_validate(sweep.trial_payload(params))


def _key_of(sweep: SweepSpec, values: dict[str, Any], kinds: list[str]) -> str | None:
    """The dry-run key of the base with `values` applied; None: it fails validation (refused
    without a dry run) or there are no values."""
    if not values:
        return None
    try:
        return dry_run_key(_trial_spec(sweep, values, kinds))
    except ValidationError:
        return None


def _probe(sweep: SweepSpec, values: dict[str, Any], kinds: list[str], check: CheckExperiment,
           checked: set[str], *, caps_only: bool = False) -> str | None:
    """Why the base with `values` applied cannot run (None when it can). `caps_only`: report
    only a cap that it exceeds. `checked`: the dry-run keys checked already (the base's at
    least), which this probe's joins; a probe with one of them is validated, not checked."""
    try:
        spec = _trial_spec(sweep, values, kinds)
    except ValidationError as exc:
        if caps_only:
            return None
        first = exc.errors()[0]
        hint = ("; this field takes integers: use randint, or quniform with an integer q"
                if first.get("type") == "int_from_float" else "")
        return f"{'.'.join(map(str, first['loc']))}: {first['msg']}{hint}"
    key = dry_run_key(spec)
    if key in checked:
        return None
    checked.add(key)
    try:
        check(spec)
    except SpecInvalid as exc:
        if caps_only and not isinstance(exc, CapExceeded):
            return None
        return "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in exc.errors)
    return None
