"""Whether a repair helped: one definition for the job record (`before_after`), the next
attempt's choice (`workers.submission.repair`, `diagnostics.auto_repair`) and the bench
(bench/diagnosis.py).

Help means leaving the problem: the repaired run is `healthy`, or its headline metric went at
least `FAIR_SHARE` of the way from the task's baseline to perfect (accuracy: from the class
prior to 1.0; loss: from the baseline loss, the mean or prior predictor's, to 0). A gain of a
few points is not help: a ten-class run going from 0.09 to 0.12 is still at chance. Without a
baseline (a loss it cannot be put in), the way is measured from the repaired job's own
metric instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.lifecycle import Status
from services.records import JobRecord

FAIR_SHARE = 0.5  # of the way from the baseline to perfect
PERFECT = {"higher": 1.0, "lower": 0.0}  # accuracy, loss
FINISHED = (Status.SUCCEEDED.value, Status.FAILED.value)


def headline_metric(*results: Mapping[str, Any] | None) -> tuple[str, str]:
    """The metric a repair is judged by, and which way is better: validation accuracy when
    the runs measured one (a classifier; a run that diverged measured nothing), validation
    loss otherwise."""
    if any("val/accuracy" in (result or {}) for result in results):
        return "val/accuracy", "higher"
    return "val/loss", "lower"


def share_of_the_way(after: float, start: float, better: str) -> float:
    """How far `after` went from `start` towards perfect (1.0 for accuracy, 0.0 for loss):
    1 at perfect, 0 at `start`, negative when worse. A start already perfect leaves only
    perfect as help."""
    perfect = PERFECT[better]
    span = perfect - start
    if abs(span) < 1e-12:
        return 1.0 if after == perfect else 0.0
    return (after - start) / span


def helped(after: float | None, better: str, *, baseline: float | None,
           before: float | None = None, after_verdict: str | None = None) -> bool:
    """Whether a repaired run left its problem: `healthy`, or `after` at least `FAIR_SHARE`
    of the way from `baseline` (else from `before`, the repaired job's metric) to perfect."""
    if after_verdict == "healthy":
        return True
    start = baseline if baseline is not None else before
    if after is None or start is None:
        return False
    return share_of_the_way(float(after), float(start), better) >= FAIR_SHARE


def outcome(original_result: Mapping[str, Any] | None,
            original_diagnosis: Mapping[str, Any] | None,
            repaired_result: Mapping[str, Any] | None,
            repaired_diagnosis: Mapping[str, Any] | None) -> dict[str, Any]:
    """{metric, better, before, after, baseline, helped} of a finished repair, from the two
    runs' results and diagnoses (plain data, as the record and the bench hold them). The
    baseline is the repair's diagnosis's (the same training targets), else the original's."""
    metric, better = headline_metric(original_result, repaired_result)
    before = (original_result or {}).get(metric)
    after = (repaired_result or {}).get(metric)
    baseline = baseline_value(better, repaired_diagnosis, original_diagnosis)
    verdict = (repaired_diagnosis or {}).get("verdict")
    return {"metric": metric, "better": better, "before": before, "after": after,
            "baseline": baseline,
            "helped": helped(after, better, baseline=baseline, before=before,
                             after_verdict=verdict)}


def baseline_value(better: str, *diagnoses: Mapping[str, Any] | None) -> float | None:
    """The first diagnosis's baseline for the headline metric (accuracy or loss)."""
    key = "accuracy" if better == "higher" else "loss"
    for diagnosis in diagnoses:
        value = ((diagnosis or {}).get("baseline") or {}).get(key)
        if value is not None:
            return float(value)
    return None


def diagnosis_of_record(record: JobRecord) -> dict[str, Any] | None:
    """The record's diagnosis (its column, or a result stored with it)."""
    return record.diagnosis or (record.result or {}).get("diagnosis")


def record_outcome(original: JobRecord, repaired: JobRecord) -> dict[str, Any]:
    """`outcome` of two job records; `helped` is None until the repair finished."""
    found = outcome(original.result, diagnosis_of_record(original), repaired.result,
                    diagnosis_of_record(repaired))
    if repaired.status not in FINISHED:
        found["helped"] = None
    return found


def repair_helped(original: JobRecord, repaired: JobRecord) -> bool:
    """Whether the finished repair `repaired` of `original` left its problem (`helped`)."""
    return bool(record_outcome(original, repaired)["helped"])
