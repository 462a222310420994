"""Scoring the outside fault benchmark from job records: detected, right cause, false alarm,
helped, and the figures per half.

Definitions:
- detected: the buggy spec was refused at submission with a 422 naming a field, or its run
  failed, or its verdict is not `healthy`. A `healthy` verdict whose findings say the run
  needs more epochs (`needs_more_epochs`) counts as detected for an epochs fault: that note
  is the published fix.
- right cause: the primary verdict or the first finding's verdict (or, for a refusal, a
  refused field) is one the mapping table gives for one of the case's source labels.
- false alarm: a fixed counterpart refused, failed, or called anything but `healthy`.
- helped: what the repaired job's record says (`repair.helped`, the service's one definition:
  `healthy`, or its headline metric at least half the way from the task's baseline to perfect;
  workers/submission/repair_outcome.py). A ten-class run going from 0.09 to 0.12 is still at
  chance: that is not help. A record without that judgement (none yet) falls back to the same
  rule computed here from the record's figures.
"""

from __future__ import annotations

from typing import Any

HELP_SHARE = 0.5  # the fallback's share; the service's is repair_outcome.FAIR_SHARE


def headline(record: dict[str, Any]) -> tuple[str, float] | None:
    """(metric, value): val accuracy for a classifier, else val loss."""
    result = record.get("result") or {}
    for key in ("val/accuracy", "val/loss"):
        value = result.get(key)
        if isinstance(value, int | float):
            return key, float(value)
    return None


def gap_closed(record: dict[str, Any], baseline: dict[str, Any] | None) -> float | None:
    """The share of the gap between the task's baseline and perfect that the run closed."""
    metric = headline(record)
    if metric is None or not baseline:
        return None
    key, value = metric
    if key == "val/accuracy" and baseline.get("accuracy") is not None:
        base = float(baseline["accuracy"])
        return (value - base) / (1.0 - base) if base < 1.0 else None
    if key == "val/loss" and baseline.get("loss"):
        base = float(baseline["loss"])
        return (base - value) / base if base > 0 else None
    return None


def verdict(record: dict[str, Any]) -> str | None:
    return (record.get("diagnosis") or {}).get("verdict")


def own_gap_closed(record: dict[str, Any], baseline: dict[str, Any] | None = None
                   ) -> float | None:
    """`gap_closed` against the run's own baseline (a repair that standardizes the targets
    changes the units of its loss), else `baseline`."""
    return gap_closed(record, (record.get("diagnosis") or {}).get("baseline") or baseline)


def helped(record: dict[str, Any], baseline: dict[str, Any] | None = None) -> bool:
    """Whether a repaired run left its problem (see the module's docstring)."""
    if record.get("status") != "succeeded":
        return False
    judged = (record.get("repair") or {}).get("helped")
    if isinstance(judged, bool):  # the service's own judgement, as the user reads it
        return judged
    if verdict(record) == "healthy":
        return True
    closed = own_gap_closed(record, baseline)
    return closed is not None and closed >= HELP_SHARE


def needs_more_epochs(record: dict[str, Any]) -> bool:
    """A healthy run still improving at a steady pace at its end: the diagnosis's estimate of
    the epochs it needs (a null estimate is no note)."""
    diagnosis = record.get("diagnosis") or {}
    return diagnosis.get("verdict") == "healthy" and bool(diagnosis.get("needs_more_epochs"))


def causes(outcome: dict[str, Any]) -> list[str]:
    """What the service named as the cause: the refused fields, or the primary verdict and
    the first finding's verdict."""
    if outcome.get("refused"):
        return [f"field:{field}" for field in outcome["refused"]]
    record = outcome.get("record") or {}
    diagnosis = record.get("diagnosis") or {}
    named = [diagnosis.get("verdict")]
    findings = diagnosis.get("findings") or []
    if findings:
        named.append(findings[0].get("verdict"))
    if needs_more_epochs(record):
        named.append("needs_more_epochs")
    return [n for n in named if n]


def is_detected(outcome: dict[str, Any], labels: list[str]) -> bool:
    if outcome.get("refused"):
        return True
    record = outcome.get("record") or {}
    if record.get("status") != "succeeded":
        return True
    # the unfinished-run note names a too-short run, the fault of an `epochs` label alone
    return verdict(record) != "healthy" or ("epochs" in labels and needs_more_epochs(record))


def is_right_cause(outcome: dict[str, Any], labels: list[str],
                   table: dict[str, dict[str, list[str]]]) -> bool:
    allowed_verdicts = {v for label in labels for v in table[label].get("verdicts", [])}
    allowed_fields = [f for label in labels for f in table[label].get("fields", [])]
    for cause in causes(outcome):
        if cause.startswith("field:"):
            field = cause.removeprefix("field:")
            if any(field == f or field.startswith(f + ".") for f in allowed_fields):
                return True
        elif cause in allowed_verdicts:
            return True
    return False


def is_false_alarm(outcome: dict[str, Any]) -> bool:
    if outcome.get("refused"):
        return True
    record = outcome.get("record") or {}
    return record.get("status") != "succeeded" or verdict(record) != "healthy"


def called(outcome: dict[str, Any]) -> str:
    """One name for the confusion matrix."""
    if outcome.get("refused"):
        return "refused"
    record = outcome.get("record") or {}
    return verdict(record) or f"{record.get('status')}, no diagnosis"


# A translation reproduces its published fault when the service shows a difference between
# the buggy and the fixed spec that the diagnosis does not decide: the buggy one refused or
# failed while the fixed one ran, or the fixed run closed at least this much more of the gap
# from the baseline to perfect than the buggy one. A case that does not is still scored (its
# source says it is faulty), and the figures are given over the reproduced cases beside.
REPRODUCED_MARGIN = 0.1


def reproduced(buggy: dict[str, Any], fixed: dict[str, Any]) -> bool:
    fixed_record = fixed.get("record") or {}
    if fixed.get("refused") or fixed_record.get("status") != "succeeded":
        return False
    record = buggy.get("record") or {}
    if buggy.get("refused") or record.get("status") != "succeeded":
        return True
    baseline = ((fixed_record.get("diagnosis") or {}).get("baseline")
                or (record.get("diagnosis") or {}).get("baseline"))
    before, after = gap_closed(record, baseline), gap_closed(fixed_record, baseline)
    return before is not None and after is not None and after - before >= REPRODUCED_MARGIN


def _share(hits: list[bool]) -> float | None:
    return sum(hits) / len(hits) if hits else None


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures over `results` (one per case: buggy, fixed, repairs, labels)."""
    buggy = [r["buggy"] for r in results]
    repaired = [r for r in results if r.get("repairs")]
    return {
        "cases": len(results),
        "reproduced": sum(bool(r.get("reproduced")) for r in results),
        "detected": _share([r["buggy"]["detected"] for r in results]),
        "right_cause": _share([r["buggy"]["right_cause"] for r in results]),
        "refused_at_submission": sum(bool(b.get("refused")) for b in buggy),
        "false_alarms": sum(r["fixed"]["false_alarm"] for r in results),
        "false_alarm_rate": _share([r["fixed"]["false_alarm"] for r in results]),
        "repairable": len(repaired),
        "first_fix_helps": _share([r["repairs"][0]["helped"] for r in repaired]),
        "helped_within_3": _share([any(a["helped"] for a in r["repairs"]) for r in repaired]),
    }


def confusion(results: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """{source label: {what the service called it: count}}, each case under its first label."""
    matrix: dict[str, dict[str, int]] = {}
    for r in results:
        row = matrix.setdefault(r["labels"][0], {})
        row[r["buggy"]["called"]] = row.get(r["buggy"]["called"], 0) + 1
    return matrix


def _primary_fixes(record: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """(verdict, ranked fixes) of a slim job record as a repair reads it: the primary
    finding's fix and alternatives; a healthy run that needs more epochs: its epochs."""
    called = record.get("verdict") or "?"
    if called == "healthy" and record.get("needs_more_epochs"):
        return "healthy (needs_more_epochs)", [{"training.epochs": "+needs_more_epochs"}]
    findings = [f for f in record.get("findings") or [] if isinstance(f, dict)]
    primary = next((f for f in findings if f.get("verdict") == called),
                   findings[0] if findings else {})
    ranked = [primary.get("fix"), *(primary.get("alternatives") or [])]
    return called, [fix for fix in ranked if isinstance(fix, dict) and fix]


def remedy_table(results: list[dict[str, Any]], half: str = "tuning") -> list[dict[str, Any]]:
    """Each remedy's success on one half: rows {verdict, fix, tried, helped}, the verdict
    being the repaired job's and the fix the candidate the repair tried (its n-th attempt on
    that job is its n-th candidate, as workers/submission/repair.py chains them); a refused
    repair counts under the fix "(refused)". Most tried first."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for case in results:
        if case.get("half") != half:
            continue
        jobs = {r["id"]: r for r in [case["buggy"].get("record") or {},
                                     *(a.get("job") or {} for a in case.get("repairs") or [])]
                if r.get("id")}
        tries: dict[str, int] = {}
        for attempt in case.get("repairs") or []:
            base = jobs.get(attempt.get("of") or "") or {}
            called, ranked = _primary_fixes(base)
            index = tries.get(base.get("id", ""), 0)
            tries[base.get("id", "")] = index + 1
            if attempt.get("refused"):
                fix = "(refused)"
            else:
                tried = ranked[index] if index < len(ranked) else {}
                fix = ", ".join(f"{k}={v}" for k, v in tried.items()) or "?"
            row = rows.setdefault((called, fix), {"verdict": called, "fix": fix, "tried": 0,
                                                  "helped": 0})
            row["tried"] += 1
            row["helped"] += bool(attempt.get("helped"))
    return sorted(rows.values(), key=lambda r: (-r["tried"], r["verdict"], r["fix"]))


def remedy_markdown(rows: list[dict[str, Any]]) -> str:
    """`remedy_table`'s rows as a Markdown table."""
    lines = ["| verdict | fix tried | tried | helped |", "|---|---|---:|---:|"]
    lines += [f"| {r['verdict']} | `{r['fix']}` | {r['tried']} | {r['helped']} |" for r in rows]
    return "\n".join(lines)
