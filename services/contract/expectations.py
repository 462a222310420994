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
job's result. Here are the expectations a spec writes; their evaluation over a finished job's
values is `workers.diagnostics.expectation_checks`, and the submission checks that a metric is
one the run logs (`workers.submission.pipeline`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    PlainValidator,
    SerializerFunctionWrapHandler,
    Tag,
    WithJsonSchema,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from models.config import StrictConfig
from services.contract.verdicts import Verdict

BOUNDS = {">=": float.__ge__, "<=": float.__le__, ">": float.__gt__, "<": float.__lt__}
Where = dict[str, Any]
_VERDICT_NAMES = [verdict.value for verdict in Verdict]


def _verdict(value: Any) -> Verdict:
    """The verdict named `value`, refused as a `Literal` of the names would be (the same error
    type and message, so a 422 reads as it did)."""
    if isinstance(value, str) and value in _VERDICT_NAMES:
        return Verdict(value)
    expected = ", ".join(map(repr, _VERDICT_NAMES[:-1])) + f" or {_VERDICT_NAMES[-1]!r}"
    raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})


# A verdict by name; its schema is the list of names, as a `Literal` of them would give.
VerdictName = Annotated[Verdict, PlainValidator(_verdict), PlainSerializer(str, return_type=str),
                        WithJsonSchema({"enum": _VERDICT_NAMES, "type": "string"})]


class _Expectation(StrictConfig):
    """Serialized without its unset fields, under the names a spec writes (">=")."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True)

    @model_serializer(mode="wrap")
    def _without_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class DiagnosisExpectation(_Expectation):
    """The run's diagnosis names this verdict (its verdict or one of its findings')."""

    diagnosis: VerdictName = Field(description="one of: " + ", ".join(_VERDICT_NAMES))


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
