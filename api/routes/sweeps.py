"""/v1/sweeps: submit, list, read, cancel. A sweep is a job in the same durable queue."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response

from api.deps import DispatcherDep, PrincipalDep, SettingsDep, StoreDep, visible_job
from api.errors import problem_responses
from services.contract.sweep_spec import SweepSpec
from services.lifecycle import TERMINAL, Status
from services.records import JobRecord
from services.store import JobNotFound
from services.sweep_table import SweepRecord, SweepsPublic
from workers.submission import pipeline

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"],
                   responses=problem_responses(400, 401, 404, 409, 413, 422, 429, 500, 503))


def visible_sweep(sweep_id: str, store: StoreDep, principal: PrincipalDep) -> JobRecord:
    """The sweep, if this caller may see it; 404 for an experiment's id too."""
    job = visible_job(sweep_id, store, principal)
    if job.job_type != "sweep":
        raise JobNotFound(job.id)
    return job


SweepDep = Annotated[JobRecord, Depends(visible_sweep)]


@router.post("", response_model=SweepRecord, status_code=201,
             responses={200: {"description": "repeat of an Idempotency-Key: the first record"}})
def submit_sweep(sweep: SweepSpec, store: StoreDep, settings: SettingsDep,
                 principal: PrincipalDep, dispatcher: DispatcherDep, response: Response,
                 idempotency_key: Annotated[str | None, Header(max_length=200)] = None
                 ) -> SweepRecord:
    """Validate the sweep (every path, every listed value dry-run on the base) and queue it."""
    record, created = pipeline.submit_sweep(
        sweep, store=store, settings=settings, owner=principal.owner, cluster=dispatcher,
        idempotency_key=idempotency_key)
    if not created:
        response.status_code = 200
    return SweepRecord.of(record)


@router.get("", response_model=SweepsPublic)
def list_sweeps(store: StoreDep, principal: PrincipalDep, status: Status | None = None,
                project: str | None = None,
                limit: Annotated[int, Query(ge=1, le=500)] = 50,
                cursor: Annotated[str | None, Query(pattern=r"^\d{1,18}$")] = None
                ) -> SweepsPublic:
    records, next_cursor = store.list(
        status=status.value if status else None, project=project, job_type="sweep",
        owner=None if principal.admin else principal.owner, limit=limit,
        cursor=int(cursor) if cursor else None)
    return SweepsPublic(data=[SweepRecord.of(r) for r in records], count=len(records),
                        next_cursor=str(next_cursor) if next_cursor else None)


@router.get("/{sweep_id}", response_model=SweepRecord)
def get_sweep(sweep: SweepDep) -> SweepRecord:
    """Status, the live trial table, the best trial and the parent MLflow run."""
    return SweepRecord.of(sweep)


@router.post("/{sweep_id}/cancel", response_model=SweepRecord)
def cancel_sweep(sweep: SweepDep, store: StoreDep, dispatcher: DispatcherDep) -> SweepRecord:
    """Cancel a queued or running sweep; a running sweep's trials are all stopped."""
    if sweep.status in TERMINAL:
        raise HTTPException(409, f"sweep {sweep.id} is already {sweep.status}; only queued or "
                                 "running sweeps can be cancelled")
    record = store.move(sweep.id, Status.CANCELLED, error="cancelled by request")
    if dispatcher is not None:  # its thread stops the Ray work (it may have started meanwhile)
        dispatcher.request_cancel(sweep.id)
    return SweepRecord.of(record)
