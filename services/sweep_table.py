"""A sweep's live trial table and its record as the API shows it.

The driver and the trials report partial trial rows ({trial_id: {field: value}}) through the
progress board; the dispatcher merges them into the job's `result` (`trials`, `best`), so the
table survives a restart of the service.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from services.contract.trial_status import (
    FINAL,
    TrialStatus,
    label_counts,
    status_counts,
    stop_verdict,
    trial_status,
)
from services.records import JobRecord

FINAL_TRIAL_STATUSES = frozenset(s.value for s in FINAL)


class TrialRow(BaseModel):
    trial_id: str
    # stopped: search.stop_on ended it (its verdict in stop_reason); early_stopped: a
    # scheduler did (services.contract.trial_status)
    status: TrialStatus = TrialStatus.QUEUED
    params: dict[str, Any] = {}
    repeat: int = 0
    epoch: int = 0
    metric: float | None = None  # the sweep's metric, latest value
    metrics: dict[str, float] = {}  # every epoch metric, latest values
    mlflow_run_id: str | None = None
    node_id: str | None = None  # the Ray node the trial ran on
    error: str | None = None
    verdict: str | None = None  # its diagnosis: live while it runs, the final one at its end
    stop_reason: str | None = None  # e.g. "diagnosis: vanishing" (search.stop_on)
    cpu_seconds_saved: float | None = None  # search.stop_on: the epochs not run, estimated


class BestTrial(BaseModel):
    trial_id: str
    params: dict[str, Any]
    metric: float
    mlflow_run_id: str | None = None


class SweepRecord(BaseModel):
    """A sweep as the API shows it."""

    id: str
    name: str | None
    project: str
    status: str
    spec: dict[str, Any]
    priority: int
    attempts: int
    # Each attempt of the sweep's driver that ended before the sweep did, with its cause.
    attempt_log: list[dict[str, Any]] = []
    owner: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    mlflow_run_id: str | None
    mlflow_experiment_id: str | None
    metric: str
    mode: str
    trials_total: int
    trials_done: int  # trials that ended, whatever their outcome
    # Of those: stopped (on their diagnosis or by the scheduler) and failed
    trials_stopped: int = 0
    trials_failed: int = 0
    # How many trials have each status label: succeeded, stopped: <verdict>, stopped:
    # scheduler, failed, cancelled, running, paused, queued
    trial_statuses: dict[str, int] = {}
    trials: list[TrialRow]
    best: BestTrial | None
    configurations: list[dict[str, Any]] | None = None  # per configuration over seeds, at the end
    expectations: list[dict[str, Any]] | None = None  # the sweep's expect, judged at the end
    # search.stop_on: trials stopped per verdict, and the CPU-seconds those stops saved
    stopped_on_diagnosis: dict[str, int] = {}
    cpu_seconds_saved: float = 0.0
    # Which swept values mattered, at the end: {params: {path: importance}, evaluator,
    # trials} or {skipped: why}
    importance: dict[str, Any] | None = None

    @classmethod
    def of(cls, job: JobRecord) -> SweepRecord:
        result = job.result or {}
        rows = result.get("trials", [])
        trials = [TrialRow(**{**row, "status": trial_status(row).value}) for row in rows]
        best = result.get("best")
        search = job.spec.get("search", {})
        stops = diagnosis_stops(rows)
        counts = status_counts(rows)
        return cls(
            id=job.id, name=job.name, project=job.project, status=job.status, spec=job.spec,
            priority=job.priority, attempts=job.attempts, attempt_log=job.attempt_log,
            owner=job.owner,
            created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
            error=job.error, mlflow_run_id=job.mlflow_run_id,
            mlflow_experiment_id=job.mlflow_experiment_id,
            metric=search.get("metric", "val/loss"), mode=search.get("mode", "min"),
            trials_total=int(result.get("trials_total", job.param_count or 0)),
            trials_done=sum(counts.get(s.value, 0) for s in FINAL),
            trials_stopped=counts[TrialStatus.STOPPED] + counts[TrialStatus.EARLY_STOPPED],
            trials_failed=counts[TrialStatus.FAILED], trial_statuses=label_counts(rows),
            trials=trials, best=BestTrial(**best) if best else None,
            configurations=result.get("configurations"),
            expectations=result.get("expectations"),
            stopped_on_diagnosis=stops["stopped_on_diagnosis"],
            cpu_seconds_saved=stops["cpu_seconds_saved"],
            importance=result.get("importance"))


class SweepsPublic(BaseModel):
    data: list[SweepRecord]
    count: int
    next_cursor: str | None


def merge_trials(rows: list[dict[str, Any]], updates: dict[str, dict[str, Any]]
                 ) -> list[dict[str, Any]]:
    """`rows` with each trial's partial update applied (new trials appended, in order).

    A final status is not overwritten by a late report of a live one (reports from the trial
    and from the driver travel separately).
    """
    by_id = {row["trial_id"]: dict(row) for row in rows}
    for trial_id, update in updates.items():
        row = by_id.setdefault(trial_id, {"trial_id": trial_id})
        update = dict(update)
        if row.get("status") in FINAL_TRIAL_STATUSES and update.get("status") not in (
                None, *FINAL_TRIAL_STATUSES):
            update.pop("status")
        if "metrics" in update:
            update["metrics"] = {**row.get("metrics", {}), **update["metrics"]}
        row.update(update)
    return sorted(by_id.values(), key=lambda r: r["trial_id"])


def best_trial(rows: list[dict[str, Any]], mode: str) -> dict[str, Any] | None:
    """The trial with the best latest metric among those that ran to the end, or while none
    has, among those still training or stopped by the scheduler. A trial stopped on its
    diagnosis is never the best: its metric is that of a configuration called broken."""
    scored = [r for r in rows if r.get("metric") is not None and trial_status(r) not in (
        TrialStatus.FAILED, TrialStatus.STOPPED)]
    finished = [r for r in scored if trial_status(r) == TrialStatus.SUCCEEDED]
    pool = finished or scored
    if not pool:
        return None
    sign = 1.0 if mode == "max" else -1.0
    top = max(pool, key=lambda r: sign * float(r["metric"]))
    return {"trial_id": top["trial_id"], "params": top.get("params", {}),
            "metric": float(top["metric"]), "mlflow_run_id": top.get("mlflow_run_id")}


def diagnosis_stops(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The trials `search.stop_on` stopped, counted per verdict, and the CPU-seconds saved
    (each stopped trial's epochs not run times its measured seconds per epoch and CPUs)."""
    counts: dict[str, int] = {}
    saved = 0.0
    for row in rows:
        verdict = stop_verdict(row)
        if verdict is None:
            continue
        counts[verdict] = counts.get(verdict, 0) + 1
        saved += float(row.get("cpu_seconds_saved") or 0.0)
    return {"stopped_on_diagnosis": dict(sorted(counts.items())), "cpu_seconds_saved": saved}


def cancel_live_trials(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The table of a cancelled sweep: every trial that had not ended is cancelled."""
    return [{**r, "status": TrialStatus.CANCELLED.value} if trial_status(r) not in FINAL else r
            for r in rows]
