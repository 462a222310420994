"""What a sweep trial ended as: the one reading of a trial row's status that every book of a sweep
uses (the live table, the sweep record, `trials.json`, `summary.json`, the plots, the CLI).

A trial ends in one of five ways:

- `succeeded`: it trained every epoch;
- `stopped`: `search.stop_on` ended it on its live diagnosis; the verdict is in its
  `stop_reason` (`diagnosis: <verdict>`) and its label reads `stopped: <verdict>`;
- `early_stopped`: a scheduler (ASHA, median stopping) ended it; labelled `stopped: scheduler`;
- `failed`: its training raised;
- `cancelled`: the sweep was cancelled while it ran.

A stopped trial's last metric is what its configuration gave before the diagnosis called it
broken: it counts wherever a trial's final metric counts (the searcher, the configurations'
means, `expect:`), but it is never the sweep's best. A trial a scheduler stopped was judged on
fewer epochs than the others: it counts in none of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

DIAGNOSIS_STOP = "diagnosis: "  # a stop reason's prefix, as with diagnostics.on_problem: stop
SCHEDULER_LABEL = "stopped: scheduler"


class TrialStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"  # PBT paused it between segments
    SUCCEEDED = "succeeded"
    STOPPED = "stopped"  # on its diagnosis (search.stop_on)
    EARLY_STOPPED = "early_stopped"  # by the scheduler
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL = frozenset({TrialStatus.SUCCEEDED, TrialStatus.STOPPED, TrialStatus.EARLY_STOPPED,
                   TrialStatus.FAILED, TrialStatus.CANCELLED})
STOPPED_STATUSES = frozenset({TrialStatus.STOPPED, TrialStatus.EARLY_STOPPED})
# The trials whose final metric counts in the configurations' means, `expect:` and importance.
FINAL_METRIC = frozenset({TrialStatus.SUCCEEDED, TrialStatus.STOPPED})
# The order counts and labels are listed in: the outcomes first, then what is still to come.
ORDER = (TrialStatus.SUCCEEDED, TrialStatus.STOPPED, TrialStatus.EARLY_STOPPED,
         TrialStatus.FAILED, TrialStatus.CANCELLED, TrialStatus.RUNNING, TrialStatus.PAUSED,
         TrialStatus.QUEUED)


def stop_verdict(row: Mapping[str, Any]) -> str | None:
    """The verdict `search.stop_on` stopped the trial for, if it did."""
    reason = row.get("stop_reason") or ""
    return reason.removeprefix(DIAGNOSIS_STOP) if reason.startswith(DIAGNOSIS_STOP) else None


def ended_status(*, finished: bool, stop_reason: str | None, cancelled: bool = False
                 ) -> TrialStatus:
    """The status of a trial Tune has ended without an error. finished: its training returned
    (its last report says so); otherwise the scheduler stopped it, or the sweep's cancel did."""
    if finished:
        return (TrialStatus.STOPPED if stop_verdict({"stop_reason": stop_reason})
                else TrialStatus.SUCCEEDED)
    return TrialStatus.CANCELLED if cancelled else TrialStatus.EARLY_STOPPED


def trial_status(row: Mapping[str, Any]) -> TrialStatus:
    """A row's status. A row whose stop reason names a verdict is `stopped` even while its
    stored status lags (the trial reports its stop before Tune ends it; a table stored before
    `stopped` existed calls it `succeeded`)."""
    try:
        status = TrialStatus(row.get("status") or TrialStatus.QUEUED)
    except ValueError:
        status = TrialStatus.QUEUED
    live = status in (TrialStatus.QUEUED, TrialStatus.RUNNING, TrialStatus.PAUSED)
    if stop_verdict(row) is not None and (live or status == TrialStatus.SUCCEEDED):
        return TrialStatus.STOPPED
    return status


def status_label(row: Mapping[str, Any]) -> str:
    """The status as the books print it: `stopped: <verdict>`, `stopped: scheduler`, or the
    status itself."""
    status = trial_status(row)
    if status == TrialStatus.STOPPED:
        return f"stopped: {stop_verdict(row)}"
    if status == TrialStatus.EARLY_STOPPED:
        return SCHEDULER_LABEL
    return status.value


def counts_final_metric(row: Mapping[str, Any]) -> bool:
    """Whether the trial's final metric counts (means, `expect:`, importance)."""
    return trial_status(row) in FINAL_METRIC


def status_counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many trials have each status, in ORDER, every final status listed (0 included)."""
    counts = dict.fromkeys((s.value for s in ORDER), 0)
    for row in rows:
        counts[trial_status(row).value] += 1
    return {status: n for status, n in counts.items()
            if n or TrialStatus(status) in FINAL}


def label_counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many trials have each label (`succeeded`, `stopped: vanishing`, ...), in ORDER then
    by name; only the labels some trial has."""
    counts: dict[str, int] = {}
    for row in rows:
        label = status_label(row)
        counts[label] = counts.get(label, 0) + 1
    rank = {s.value: i for i, s in enumerate(ORDER)}

    def key(label: str) -> tuple[int, str]:
        base = (TrialStatus.STOPPED.value if label.startswith("stopped: ")
                and label != SCHEDULER_LABEL else TrialStatus.EARLY_STOPPED.value
                if label == SCHEDULER_LABEL else label)
        return rank.get(base, len(rank)), label

    return {label: counts[label] for label in sorted(counts, key=key)}
