"""Whether a finished job's expectations (`expect:`, services/contract/expectations.py) held:
each one against the run's result, or against a sweep's trial rows. Pure over those values; a
comparison runs scipy's Welch t-test, which is why this is not in the contract."""

from __future__ import annotations

import json
import math
from typing import Any

from services.contract.expectations import (
    BOUNDS,
    CompareExpectation,
    Comparison,
    DiagnosisExpectation,
    MetricExpectation,
    Where,
)
from services.contract.trial_status import counts_final_metric

# Metrics whose smaller values are better, when a comparison does not say (`mode`).
_LOWER_IS_BETTER = ("loss", "mse", "error", "perplexity")


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
    """Each expectation against the sweep's trial rows (those whose final metric counts: they
    trained to the end, or search.stop_on stopped them)."""
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
    """The final values of `metric` of the trials whose final metric counts (succeeded, or
    stopped on their diagnosis) and whose params include `where`."""
    values = []
    for row in rows:
        params = row.get("params") or {}
        if not counts_final_metric(row) or not all(
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
