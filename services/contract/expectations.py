"""`expect:`: what an experiment or a sweep claims, checked when it ends.

Three forms, told apart by their key:

- `{diagnosis: vanishing}`: the run's verdict (or one of its findings) is this one;
- `{metric: val/accuracy, ">=": 0.9}`: the run's final value of a metric it logs is within the
  bounds (">=", "<=", ">", "<"; one or more); in a sweep, the mean over its trials that trained to
  the end, or over those whose values include `where: {path: value}`;
- `{compare: {metric, better: {path: value}, worse: {path: value}, confidence: 0.95}}` (sweeps):
  the trials with the `better` values beat those with the `worse` values, by a one-sided Welch
  t-test over the repeats at this confidence.

A failed expectation does not fail the job: it is recorded as `{expect, observed, held}` in the
job's result. The evaluation here is pure (over the result's values); the submission checks
that a metric is one the run logs (`workers.submission.pipeline`).
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    Tag,
    model_serializer,
    model_validator,
)

from models.config import StrictConfig

VERDICTS = ("healthy", "not_learning", "vanishing", "exploding", "dead_units", "saturated",
            "symmetric", "unstable", "slow", "overfitting", "diverged", "no_gradients")
Verdict = Literal["healthy", "not_learning", "vanishing", "exploding", "dead_units", "saturated",
                  "symmetric", "unstable", "slow", "overfitting", "diverged", "no_gradients"]
BOUNDS = {">=": float.__ge__, "<=": float.__le__, ">": float.__gt__, "<": float.__lt__}
# Metrics whose smaller values are better, when a comparison does not say (`mode`).
_LOWER_IS_BETTER = ("loss", "mse", "error", "perplexity")
Where = dict[str, Any]


class _Expectation(StrictConfig):
    """Serialized without its unset fields, under the names a spec writes (">=")."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True)

    @model_serializer(mode="wrap")
    def _without_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class DiagnosisExpectation(_Expectation):
    """The run's diagnosis names this verdict (its verdict or one of its findings')."""

    diagnosis: Verdict = Field(description="one of: " + ", ".join(VERDICTS))


class MetricExpectation(_Expectation):
    """A bound on a metric's final value (a sweep: its mean over the trials, or over `where`)."""

    metric: str = Field(min_length=1, max_length=250, description="a metric the run logs, "
                        "e.g. val/accuracy")
    ge: float | None = Field(None, alias=">=", description='written ">=": at least this')
    le: float | None = Field(None, alias="<=", description='written "<=": at most this')
    gt: float | None = Field(None, alias=">", description='written ">": above this')
    lt: float | None = Field(None, alias="<", description='written "<": below this')
    where: Where | None = Field(None, description="sweeps: only the trials with these values "
                                "(dotted path -> value of the space)")

    @model_validator(mode="after")
    def _bounded(self) -> MetricExpectation:
        if not self.bounds():
            raise ValueError(f'a metric expectation needs a bound: one of {", ".join(BOUNDS)} '
                             f"with a number, e.g. {{metric: {self.metric}, \">=\": 0.9}}")
        return self

    def bounds(self) -> dict[str, float]:
        values = {">=": self.ge, "<=": self.le, ">": self.gt, "<": self.lt}
        return {op: v for op, v in values.items() if v is not None}


class Comparison(_Expectation):
    metric: str = Field(min_length=1, max_length=250, description="a metric every trial logs")
    better: Where = Field(min_length=1, description="the values (dotted path -> value) of the "
                          "configurations claimed better")
    worse: Where = Field(min_length=1, description="the values of those claimed worse")
    confidence: float = Field(0.95, gt=0.5, lt=1.0, description="one-sided Welch t-test over "
                              "the repeats: held when p < 1 - confidence")
    mode: Literal["max", "min"] | None = Field(None, description="which way is better; "
                                               "default: the search's mode for its metric, "
                                               "else min for a loss, mse or error, else max")

    @model_validator(mode="after")
    def _distinct(self) -> Comparison:
        if self.better == self.worse:
            raise ValueError("`better` and `worse` select the same trials; give them different "
                             "values")
        return self


class CompareExpectation(_Expectation):
    """Sweeps: one group of configurations beats another, over the repeats."""

    compare: Comparison


def _form(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in ("diagnosis", "compare", "metric"):
            if key in value:
                return key
    if isinstance(value, _Expectation):
        return {DiagnosisExpectation: "diagnosis", CompareExpectation: "compare",
                MetricExpectation: "metric"}.get(type(value))
    return None


_FORMS = ("an expectation is {diagnosis: <verdict>}, {metric: <key>, '>=': <number>} (or "
          "'<=', '>', '<') or, in a sweep, {compare: {metric, better, worse, confidence}}")
Expectation = Annotated[
    Union[Annotated[DiagnosisExpectation, Tag("diagnosis")],  # noqa: UP007
          Annotated[MetricExpectation, Tag("metric")],
          Annotated[CompareExpectation, Tag("compare")]],
    Discriminator(_form, custom_error_type="expectation_form",
                  custom_error_message=_FORMS)]


def _of_an_experiment(expectation: Any) -> Any:
    if isinstance(expectation, CompareExpectation):
        raise ValueError("`compare` needs repeats of several configurations: it is for a "
                         "sweep's expect; an experiment can expect a diagnosis or a metric bound")
    if isinstance(expectation, MetricExpectation) and expectation.where is not None:
        raise ValueError("`where` selects a sweep's trials; an experiment has one run: drop it")
    return expectation


def _as_list(value: Any) -> Any:
    """One expectation may be written without the list around it."""
    return [value] if isinstance(value, dict) else value


ExperimentExpect = Annotated[list[Annotated[Expectation, AfterValidator(_of_an_experiment)]],
                             BeforeValidator(_as_list), Field(max_length=32)]
SweepExpect = Annotated[list[Expectation], BeforeValidator(_as_list), Field(max_length=32)]
EXPECT_DESCRIPTION = ("what the run claims, checked when it ends and recorded with what was "
                      "observed (a failure does not fail the job): {diagnosis: <verdict>} or "
                      "{metric: <key>, '>=': <number>} ('<=', '>', '<'), or a list of them")
SWEEP_EXPECT_DESCRIPTION = (
    "what the sweep claims, checked at its end: metric bounds on the trials' mean (`where` "
    "selects trials by their values) and {compare: {metric, better: {path: value}, worse: "
    "{path: value}, confidence: 0.95}} over the repeats")


# -- evaluation (pure: over a finished job's values) --------------------------------------------
def outcome(expectation: Any, observed: Any, held: bool) -> dict[str, Any]:
    return {"expect": expectation.model_dump(mode="json"), "observed": observed,
            "held": bool(held)}


def within(value: Any, bounds: dict[str, float]) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return False
    return all(BOUNDS[op](float(value), bound) for op, bound in bounds.items())


def evaluate_experiment(expectations: list[Any], result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each expectation against a finished run's result (its final metrics and `diagnosis`)."""
    out = []
    for expectation in expectations:
        if isinstance(expectation, DiagnosisExpectation):
            named = verdicts_of(result.get("diagnosis"))
            out.append(outcome(expectation, named[0] if len(named) == 1 else named or None,
                               expectation.diagnosis in named))
        elif isinstance(expectation, MetricExpectation):
            value = result.get(expectation.metric)
            out.append(outcome(expectation, value, within(value, expectation.bounds())))
    return out


def verdicts_of(diagnosis: Any) -> list[str]:
    """The run's verdict first, then its findings' other verdicts."""
    if not isinstance(diagnosis, dict):
        return []
    named = [diagnosis.get("verdict")] + [f.get("verdict") for f in
                                          diagnosis.get("findings") or [] if isinstance(f, dict)]
    return list(dict.fromkeys(v for v in named if isinstance(v, str)))


def evaluate_sweep(expectations: list[Any], rows: list[dict[str, Any]], *, search_metric: str,
                   search_mode: str) -> list[dict[str, Any]]:
    """Each expectation against the sweep's trial rows (those that trained to the end)."""
    out = []
    for expectation in expectations:
        if isinstance(expectation, MetricExpectation):
            values = trial_values(rows, expectation.metric, expectation.where or {},
                                  search_metric)
            mean = sum(values) / len(values) if values else None
            out.append(outcome(expectation, mean, within(mean, expectation.bounds())))
        elif isinstance(expectation, CompareExpectation):
            observed, held = _compare(expectation.compare, rows, search_metric, search_mode)
            out.append(outcome(expectation, observed, held))
        else:  # a verdict is a run's: the sweep's trials each have their own
            out.append(outcome(expectation, "a sweep has no single diagnosis", False))
    return out


def trial_values(rows: list[dict[str, Any]], metric: str, where: Where,
                 search_metric: str) -> list[float]:
    """The final values of `metric` of the succeeded trials whose params include `where`."""
    values = []
    for row in rows:
        params = row.get("params") or {}
        if row.get("status") != "succeeded" or not all(
                _same(params.get(path), value) for path, value in where.items()):
            continue
        value = (row.get("metrics") or {}).get(metric)
        if value is None and metric == search_metric:
            value = row.get("metric")
        if isinstance(value, int | float) and math.isfinite(value):
            values.append(float(value))
    return values


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def comparison_mode(comparison: Comparison, search_metric: str, search_mode: str) -> str:
    if comparison.mode is not None:
        return comparison.mode
    if comparison.metric == search_metric:
        return search_mode
    leaf = comparison.metric.rsplit("/", 1)[-1]
    return "min" if any(word in leaf for word in _LOWER_IS_BETTER) else "max"


def _compare(comparison: Comparison, rows: list[dict[str, Any]], search_metric: str,
             search_mode: str) -> tuple[dict[str, Any], bool]:
    better = trial_values(rows, comparison.metric, comparison.better, search_metric)
    worse = trial_values(rows, comparison.metric, comparison.worse, search_metric)
    mode = comparison_mode(comparison, search_metric, search_mode)
    observed: dict[str, Any] = {"better_mean": _mean(better), "worse_mean": _mean(worse),
                                "n": [len(better), len(worse)], "mode": mode}
    if len(better) < 2 or len(worse) < 2:
        observed["p_value"] = None
        observed["why"] = "needs at least 2 finished trials on each side (repeat >= 2)"
        return observed, False
    p = one_sided_p(better, worse, larger=mode == "max")
    observed["p_value"] = p
    return observed, p < 1.0 - comparison.confidence


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def one_sided_p(better: list[float], worse: list[float], *, larger: bool) -> float:
    """Welch's t-test: the p-value of `better` not beating `worse` (larger, or smaller)."""
    from scipy.stats import ttest_ind

    if max(better) == min(better) and max(worse) == min(worse):
        # No spread on either side: the t statistic is undefined; the means decide.
        wins = better[0] > worse[0] if larger else better[0] < worse[0]
        return 0.0 if wins else 1.0
    test = ttest_ind(better, worse, equal_var=False,
                     alternative="greater" if larger else "less")
    p = float(test.pvalue)
    return p if math.isfinite(p) else 1.0
