"""Job statuses and the one function that changes them."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})

# queued -> running -> succeeded | failed | cancelled; running -> queued only on a retry or a
# recovery; nothing leaves a terminal status.
ALLOWED: dict[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset({Status.RUNNING, Status.CANCELLED}),
    Status.RUNNING: frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.QUEUED}),
    Status.SUCCEEDED: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELLED: frozenset(),
}


class IllegalTransition(Exception):
    def __init__(self, job_id: str, current: str, target: str):
        allowed = sorted(ALLOWED[Status(current)])
        super().__init__(f"job {job_id} is {current}; it cannot become {target} "
                         f"(allowed from {current}: {allowed or 'none, it is final'})")
        self.job_id, self.current, self.target = job_id, current, target


class HasStatus(Protocol):
    id: str
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime | None


def now() -> datetime:
    return datetime.now(UTC)


def transition(job: HasStatus, target: Status, **fields: Any) -> None:
    """Move `job` to `target` and set `fields` with it, or raise IllegalTransition.

    Sets started_at on the first start and finished_at on reaching a terminal status.
    """
    current = Status(job.status)
    if target not in ALLOWED[current]:
        raise IllegalTransition(job.id, current, target)
    stamp = now()
    job.status = target.value
    job.updated_at = stamp
    if target == Status.RUNNING and job.started_at is None:
        job.started_at = stamp
    if target in TERMINAL:
        job.finished_at = stamp
    for key, value in fields.items():
        setattr(job, key, value)
