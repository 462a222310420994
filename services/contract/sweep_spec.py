"""The sweep spec: a base experiment, a search space over dotted spec paths, the search and the
scheduler (docs/spec-reference.md lists every field).

Structure is checked here (pydantic); whether every value the space can produce gives a spec
that runs is checked at submission by `workers.submission.sweep_space`. A trial's spec is the
base with the trial's values applied (`SweepSpec.trial_payload`), validated again before it runs.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Annotated, Any, Literal, Union

from pydantic import Field, ValidationInfo, field_validator, model_validator

from models.registry import MODEL_KINDS
from services.contract.expectations import SWEEP_EXPECT_DESCRIPTION, SweepExpect
from services.contract.sections import Strict
from services.contract.spec import ExperimentSpec
from services.contract.tags import Tags
from services.contract.verdicts import Verdict

# The Tune config key of the repeat index (random and grid search); TPE's Repeater sets its own.
REPEAT_KEY = "__repeat__"
TRIAL_INDEX_KEY = "__trial_index__"
MAX_TRIALS = 10_000
# The verdicts `search.stop_on` may name: every problem the diagnosis calls.
STOP_VERDICTS = tuple(v.value for v in Verdict if v != Verdict.HEALTHY)


# -- domains ---------------------------------------------------------------------------------
class ChoiceDomain(Strict):
    """One of `values`, sampled (random, TPE) or enumerated (grid search)."""

    type: Literal["choice"] = "choice"
    values: list[Any] = Field(min_length=1, max_length=1000, description="the values to try")


class GridDomain(Strict):
    """Every one of `values`, in every sample (sampled like a choice under TPE)."""

    type: Literal["grid"] = "grid"
    values: list[Any] = Field(min_length=1, max_length=1000, description="every one is tried")


class UniformDomain(Strict):
    """A float drawn uniformly from [low, high]."""

    type: Literal["uniform"] = "uniform"
    low: float = Field(description="the smallest value")
    high: float = Field(description="the largest value")

    @model_validator(mode="after")
    def _ordered(self) -> UniformDomain:
        if not self.low < self.high:
            raise ValueError(f"uniform needs low < high, got low={self.low}, high={self.high}")
        return self


class LogUniformDomain(Strict):
    """Uniform in log space: every decade between low and high is equally likely."""

    type: Literal["loguniform"] = "loguniform"
    low: float = Field(description="the smallest value, > 0")
    high: float = Field(description="the largest value")

    @model_validator(mode="after")
    def _positive(self) -> LogUniformDomain:
        if self.low <= 0:
            raise ValueError(f"loguniform needs low > 0 (got {self.low}): the log of 0 or a "
                             "negative number does not exist; give the smallest positive value "
                             "to try, e.g. low: 1.0e-5, or use type: uniform")
        if not self.low < self.high:
            raise ValueError(f"loguniform needs low < high, got low={self.low}, high={self.high}")
        return self


class RandIntDomain(Strict):
    """An integer in [low, high): `high` is excluded, as in Python's range."""

    type: Literal["randint"] = "randint"
    low: int = Field(description="the smallest value")
    high: int = Field(description="one past the largest value")

    @model_validator(mode="after")
    def _ordered(self) -> RandIntDomain:
        if not self.low < self.high:
            raise ValueError(f"randint draws from [low, high) and needs low < high, got "
                             f"low={self.low}, high={self.high}; for one value use a choice")
        return self


class QUniformDomain(Strict):
    """Uniform in [low, high], rounded to a multiple of `q` (integers when all three are)."""

    type: Literal["quniform"] = "quniform"
    low: float = Field(description="the smallest value")
    high: float = Field(description="the largest value")
    q: float = Field(gt=0.0, description="the step values are rounded to")

    @model_validator(mode="after")
    def _ordered(self) -> QUniformDomain:
        if not self.low < self.high:
            raise ValueError(f"quniform needs low < high, got low={self.low}, high={self.high}")
        if self.q > self.high - self.low:
            raise ValueError(f"q={self.q} is wider than [low, high]; lower q or widen the range")
        return self

    @property
    def integral(self) -> bool:
        return all(float(v).is_integer() for v in (self.low, self.high, self.q))

    def quantize(self, value: float) -> float | int:
        rounded = round(value / self.q) * self.q
        return int(round(rounded)) if self.integral else rounded

    def extremes(self) -> tuple[float | int, float | int]:
        """The smallest and largest values a draw can round to."""
        return (self.quantize(math.ceil(self.low / self.q - 1e-9) * self.q),
                self.quantize(math.floor(self.high / self.q + 1e-9) * self.q))


Domain = Annotated[Union[ChoiceDomain, GridDomain, UniformDomain,  # noqa: UP007
                         LogUniformDomain, RandIntDomain, QUniformDomain],
                   Field(discriminator="type")]
ListedDomain = ChoiceDomain | GridDomain


# -- search and scheduler ----------------------------------------------------------------------
class PriorTrial(Strict):
    """A trial an earlier sweep ran: its values and its final metric."""

    params: dict[str, Any] = Field(max_length=64, description="dotted path -> value, each a "
                                                               "value the space can give")
    metric: float = Field(allow_inf_nan=False, description="its `search.metric` at its end")


MAX_PRIOR_TRIALS = 1000


class SearchSpec(Strict):
    """How trials are chosen, and the metric that ranks them."""

    algorithm: Literal["grid", "random", "tpe"] = Field(
        "random", description="grid: every grid and choice value; random: Tune's basic variant "
                              "generator; tpe: Optuna's tree-structured Parzen estimator")
    num_samples: int = Field(1, ge=1, le=MAX_TRIALS, description=(
        "random: samples per grid point; tpe: configurations tried; grid: passes over the grid"))
    metric: str = Field("val/loss", description="an epoch metric every trial logs, e.g. "
                                                "val/accuracy, val/loss, train/loss")
    mode: Literal["min", "max"] = Field("min", description="whether a lower or a higher "
                                                           "`metric` is better")
    max_concurrent: int | None = Field(None, ge=1, description="trials at once; default: as "
                                                               "many as the cluster fits")
    stop_on: list[str] = Field(default_factory=list, max_length=len(Verdict), description=(
        "verdicts of the live diagnosis that stop a trial as soon as it names one (after "
        "`stop_grace_epochs`), whatever the scheduler; its status is `stopped` (shown as "
        "`stopped: <verdict>`), its run ends with `diagnosis: <verdict>` as the stop reason, "
        "and its last metric is the trial's: the searcher, its configuration's mean in the "
        "summary and `expect:` count it, but it is never the best trial (a trial a scheduler "
        "stopped counts in neither). Under pbt the trial is replaced by a copy of a better one "
        "instead. "
        "One or more of: "
        + ", ".join(STOP_VERDICTS)))
    stop_grace_epochs: int = Field(2, ge=1, description="epochs every trial runs before "
                                   "`stop_on` may stop it")
    prior: list[PriorTrial] = Field(default_factory=list, max_length=MAX_PRIOR_TRIALS,
                                    description=(
        "trials an earlier sweep of this space ran (`layerwise sweep --extend ID`): tpe is told "
        "them before it proposes, so it goes on from what they showed; random draws other "
        "values than the earlier sweep's (its draws start after theirs); not for grid"))
    log_models: Literal["best", "all", "none"] = Field("best", description=(
        "which trials log their trained model (runs:/<id>/model). best: a trial that ends as "
        "the best so far by `metric` (so the sweep's best trial always has its model, and in "
        "a random order about ln N of N trials log one); all: every trial that trains to the "
        "end; none. A trial stopped on its diagnosis logs none unless `all`"))

    @field_validator("stop_on")
    @classmethod
    def _known_problems(cls, verdicts: list[str]) -> list[str]:
        example = "e.g. stop_on: [vanishing, exploding, dead_units, symmetric, not_learning]"
        for verdict in verdicts:
            if verdict == "healthy":
                raise ValueError("healthy is not a problem: stop_on lists the verdicts that "
                                 f"stop a trial; drop healthy ({example})")
            if verdict not in STOP_VERDICTS:
                raise ValueError(f"unknown verdict {verdict!r} in stop_on; use verdicts of the "
                                 f"diagnosis: {', '.join(STOP_VERDICTS)} ({example})")
        return list(dict.fromkeys(verdicts))


class FifoScheduler(Strict):
    """Every trial runs to the end."""

    name: Literal["fifo"] = "fifo"


class AshaScheduler(Strict):
    """Asynchronous successive halving: stops the worst trials at each rung (epochs)."""

    name: Literal["asha"] = "asha"
    grace_period: int = Field(1, ge=1, description="epochs every trial runs before a stop")
    reduction_factor: float = Field(3.0, gt=1.0, description="1 / the fraction of trials "
                                    "kept at each rung")
    max_t: int | None = Field(None, ge=1, description="epochs of the last rung; default: the "
                                                      "base spec's training.epochs")
    brackets: int = Field(1, ge=1, le=10, description="Hyperband brackets (1: plain ASHA)")


class MedianScheduler(Strict):
    """Stops a trial whose best metric so far is worse than the median of the others' at the
    same epoch."""

    name: Literal["median"] = "median"
    grace_period: int = Field(1, ge=1, description="epochs before a trial may be stopped")
    min_samples_required: int = Field(3, ge=1, description="trials that must have reached "
                                      "an epoch before the median there counts")


class PbtScheduler(Strict):
    """Population based training: every `perturbation_interval` epochs the worst quantile
    copies the weights of the best and perturbs the space's non-architecture values."""

    name: Literal["pbt"] = "pbt"
    perturbation_interval: int = Field(2, ge=1, description="epochs between exploit steps")
    quantile_fraction: float = Field(0.25, gt=0.0, le=0.5, description="the share of trials "
                                     "that count as worst (and as best)")
    resample_probability: float = Field(0.25, ge=0.0, le=1.0, description="the chance that an "
                                        "exploiting trial draws a value afresh from the space "
                                        "instead of perturbing the copied one")
    synch: bool = Field(False, description="wait until every trial reaches the interval before "
                                           "exploiting (no trial runs ahead of the others)")


Scheduler = Annotated[Union[FifoScheduler, AshaScheduler,  # noqa: UP007
                            MedianScheduler, PbtScheduler], Field(discriminator="name")]

# Paths PBT may not perturb: a copied checkpoint only fits the architecture and data it was
# trained on.
PBT_FIXED_PREFIXES = ("model.", "data.", "task", "loss", "training.epochs", "resources.")


# -- the sweep -------------------------------------------------------------------------------
class SweepSpec(Strict):
    """A sweep: every trial is the base experiment with the trial's values applied, run on
    Ray Tune as a child of the sweep's MLflow run."""

    name: str | None = Field(None, max_length=200, description="the parent MLflow run's name; "
                                                               "default: the base's name")
    project: str | None = Field(None, max_length=250, description="MLflow experiment; default: "
                                                                  "the base spec's project")
    base: ExperimentSpec = Field(description="the experiment every trial starts from")
    space: dict[str, Domain] = Field(default_factory=dict, max_length=64, description=(
        "dotted spec path -> domain, e.g. optimizer.lr: {type: loguniform, low: 1e-4, high: 0.1}"))
    search: SearchSpec = Field(default_factory=SearchSpec, description="how trials are chosen")
    scheduler: Scheduler = Field(default_factory=FifoScheduler, description="what stops "
                                 "trials early, chosen by `name`")
    repeat: int = Field(1, ge=1, le=100, validate_default=True, description=(
        "seeds per configuration; the summary reports mean and 95% interval"))
    priority: int = Field(0, ge=-1000, le=1000, description="as an experiment's: higher "
                                                            "launches first")
    tags: Tags = Field(default_factory=dict, max_length=64, description="MLflow run tags")
    expect: SweepExpect = Field(default_factory=list, description=SWEEP_EXPECT_DESCRIPTION)

    @field_validator("repeat")
    @classmethod
    def _something_to_search(cls, repeat: int, info: ValidationInfo) -> int:
        # On `repeat` (validated after `space`), so that the error names a field.
        if "space" in info.data and not info.data["space"] and repeat == 1:
            raise ValueError("a sweep needs a space (dotted path -> domain) or repeat > 1")
        return repeat

    @model_validator(mode="after")
    def _stop_on_can_fire(self) -> SweepSpec:
        if not self.search.stop_on:
            return self
        epochs = self.base.training.epochs
        if self.search.stop_grace_epochs >= epochs:
            raise ValueError(
                f"search.stop_grace_epochs ({self.search.stop_grace_epochs}) leaves no epoch to "
                f"stop in: the base trains {epochs}; lower it below base.training.epochs")
        diag = self.base.diagnostics
        if not (diag.grad_norms or diag.update_norms or diag.weight_norms
                or diag.activation_stats):
            raise ValueError(
                "search.stop_on needs the live diagnosis, which measures nothing here: turn "
                "on base.diagnostics.grad_norms (or activation_stats), or drop search.stop_on")
        return self

    @model_validator(mode="after")
    def _prior_in_space(self) -> SweepSpec:
        if not self.search.prior:
            return self
        if self.search.algorithm == "grid":
            raise ValueError("search.prior: a grid search runs every point anyway, so it has "
                             "nothing to learn from earlier trials; use algorithm tpe or random")
        for i, trial in enumerate(self.search.prior):
            for path, value in trial.params.items():
                where = f"search.prior[{i}].params.{path}"
                if path not in self.space:
                    raise ValueError(f"{where}: not a path of the space ({', '.join(self.space)})")
                if not _in_domain(self.space[path], value):
                    raise ValueError(f"{where}: {value!r} is not a value of its domain "
                                     f"{self.space[path].model_dump()}")
        return self

    def encode(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """{path: value} as a Tune config (listed domains as indices), or None when `params`
        does not give every path of the space."""
        if set(params) != set(self.space):
            return None
        config: dict[str, Any] = {}
        for path in self.space:
            value = params[path]
            listed = self.listed(path)
            config[path] = listed.values.index(value) if listed is not None else value
        return config

    @property
    def display_name(self) -> str:
        return self.name or self.base.name or "sweep"

    @property
    def mlflow_project(self) -> str:
        return self.project or self.base.project

    @property
    def reports_every_epoch(self) -> bool:
        """Schedulers that judge trials while they run need every epoch's metrics."""
        return self.scheduler.name != "fifo"

    def listed(self, path: str) -> ListedDomain | None:
        domain = self.space[path]
        return domain if isinstance(domain, ChoiceDomain | GridDomain) else None

    def trial_count(self) -> int:
        """How many trials the sweep runs."""
        if self.search.algorithm == "tpe":
            return self.search.num_samples * self.repeat
        grid = 1
        for domain in self.space.values():
            enumerated = isinstance(domain, GridDomain) or (
                self.search.algorithm == "grid" and isinstance(domain, ChoiceDomain))
            grid *= len(domain.values) if enumerated else 1  # type: ignore[union-attr]
        return grid * self.search.num_samples * self.repeat

    # -- from a Tune config to a trial's spec --------------------------------------------------
    def decode(self, config: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """A Tune config (listed domains hold indices) as {path: value} and the repeat index."""
        params: dict[str, Any] = {}
        for path, domain in self.space.items():
            if path not in config:
                continue
            params[path] = _decode_value(domain, config[path])
        return params, int(config.get(REPEAT_KEY, config.get(TRIAL_INDEX_KEY, 0)) or 0)

    def trial_payload(self, params: dict[str, Any], repeat_index: int = 0, *,
                      name: str | None = None) -> dict[str, Any]:
        """The base spec with `params` applied and the seed shifted by the repeat index."""
        payload = apply_params(self.base.model_dump(mode="json"), params)
        payload["training"]["seed"] = int(payload["training"].get("seed", 0)) + repeat_index
        if name is not None:
            payload["name"] = name
        payload["project"] = self.mlflow_project
        return payload


def _in_domain(domain: Any, value: Any) -> bool:
    if isinstance(domain, ChoiceDomain | GridDomain):
        return value in domain.values
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(domain, RandIntDomain):
        return float(value).is_integer() and domain.low <= value < domain.high
    return bool(domain.low <= value <= domain.high)


def _decode_value(domain: Any, value: Any) -> Any:
    """A Tune value as the spec value; PBT's perturbations (x0.8, x1.2) are clamped back into
    the domain, so a perturbed trial stays inside what was validated."""
    if isinstance(domain, ChoiceDomain | GridDomain):
        return domain.values[min(max(int(value), 0), len(domain.values) - 1)]
    if isinstance(domain, RandIntDomain):
        return min(max(int(value), domain.low), domain.high - 1)
    clamped = min(max(float(value), domain.low), domain.high)
    if isinstance(domain, QUniformDomain):
        lowest, highest = domain.extremes()
        return min(max(domain.quantize(clamped), lowest), highest)
    return clamped


def configuration_key(params: dict[str, Any]) -> str:
    """Trials with equal keys differ only by seed (the `repeat` dimension)."""
    return json.dumps(params, sort_keys=True, default=str)


def model_fields_of(kind: str) -> set[str] | None:
    """The config fields of model kind `kind`, or None for an unknown kind."""
    for model_kind in MODEL_KINDS:
        if model_kind.kind == kind:
            return set(model_kind.config_cls.model_fields)
    return None


def apply_params(base: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A copy of spec payload `base` with each dotted path set to its value.

    Switching `model.kind` keeps only the model fields the new kind has (the rest belonged to
    the old kind); a `model.<field>` the trial's kind does not have is left out, so one sweep
    can vary kinds and the fields of each.
    """
    payload = copy.deepcopy(base)
    kind = params.get("model.kind")
    if kind is not None and kind != payload["model"].get("kind"):
        fields = model_fields_of(kind)
        model = payload["model"]
        payload["model"] = {k: v for k, v in model.items() if fields is None or k in fields}
        payload["model"]["kind"] = kind
    fields = model_fields_of(payload["model"].get("kind", ""))
    for path, value in params.items():
        parts = path.split(".")
        if path == "model.kind" or (parts[0] == "model" and fields is not None
                                    and parts[1] not in fields):
            continue
        node = payload
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = copy.deepcopy(value)
    return payload
