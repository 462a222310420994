"""/v1/experiments: submit, list, read, cancel, repair, metric history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Response
from mlflow.tracking import MlflowClient
from starlette.concurrency import run_in_threadpool

from api.auth import Principal
from api.deps import DispatcherDep, JobDep, PrincipalDep, SettingsDep, StoreDep
from api.errors import problem_responses
from api.schemas import (
    BeforeAfter,
    ExperimentRecord,
    ExperimentsPublic,
    MetricHistory,
    MetricKeys,
    MetricPoint,
)
from services.contract.spec import ExperimentSpec
from services.contract.verdicts import Verdict
from services.lifecycle import TERMINAL, Status
from services.observability import JOBS_FINISHED
from services.records import JobRecord
from services.store import JobNotFound, JobStore
from workers.submission import pipeline, repair
from workers.submission.dry_run import DRY_RUNS, DryRunsBusy

router = APIRouter(prefix="/v1/experiments", tags=["experiments"],
                   responses=problem_responses(400, 401, 404, 409, 413, 422, 429, 500, 503))


@router.post("", response_model=JobRecord, status_code=201,
             responses={200: {"description": "repeat of an Idempotency-Key: the first record"}})
async def submit_experiment(spec: ExperimentSpec, store: StoreDep, settings: SettingsDep,
                            principal: PrincipalDep, dispatcher: DispatcherDep,
                            response: Response,
                            idempotency_key: Annotated[str | None, Header(max_length=200)] = None
                            ) -> JobRecord:
    """Validate the spec, dry-run it on one small batch, and queue it. 503 with Retry-After
    when as many submissions as the service checks at once are already waiting."""
    # One hop to the thread pool for the blocking part (a dry run, the store). A plain `def`
    # route made two: FastAPI also checks a sync route's return value on the pool.
    # Admitted here, before it waits for a thread: beyond what the dry-run pool takes, 503.
    try:
        with DRY_RUNS.admitted():
            record, created = await run_in_threadpool(
                pipeline.submit_experiment, spec, store=store, settings=settings,
                owner=principal.owner, cluster=dispatcher, idempotency_key=idempotency_key)
    except DryRunsBusy as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from None
    if not created:
        response.status_code = 200
    return record


@router.get("", response_model=ExperimentsPublic)
def list_experiments(store: StoreDep, principal: PrincipalDep,
                     status: Status | None = None, sweep_id: str | None = None,
                     project: str | None = None,
                     verdict: Annotated[Verdict | None, Query(description=(
                         "the final diagnosis's verdict (finished jobs)"))] = None,
                     limit: Annotated[int, Query(ge=1, le=500)] = 50,
                     cursor: Annotated[str | None, Query(pattern=r"^\d{1,18}$")] = None
                     ) -> ExperimentsPublic:
    """Newest first; `status`, `sweep_id`, `project` and `verdict` narrow the list."""
    records, next_cursor = store.list(
        status=status.value if status else None, sweep_id=sweep_id, project=project,
        verdict=verdict.value if verdict else None,
        owner=None if principal.admin else principal.owner, job_type="experiment",
        limit=limit, cursor=int(cursor) if cursor else None)
    return ExperimentsPublic(data=records, count=len(records),
                             next_cursor=str(next_cursor) if next_cursor else None)


@router.get("/{job_id}", response_model=ExperimentRecord)
def get_experiment(job: JobDep, store: StoreDep, principal: PrincipalDep,
                   dispatcher: DispatcherDep) -> ExperimentRecord:
    if job.status == Status.QUEUED and dispatcher is not None:
        job = job.model_copy(update={"waiting": dispatcher.waiting_reason(job)})
    return _with_repair(job, store, principal)


@router.post("/{job_id}/repair", response_model=ExperimentRecord, status_code=201,
             responses={200: {"description": "your repair of this job that is queued or "
                                             "running, or finished and helped (or a repeated "
                                             "Idempotency-Key): it"}})
async def repair_experiment(job: JobDep, store: StoreDep, settings: SettingsDep,
                            principal: PrincipalDep, dispatcher: DispatcherDep,
                            response: Response,
                            idempotency_key: Annotated[str | None, Header(max_length=200)] = None
                            ) -> ExperimentRecord:
    """Submit the fix the diagnosis of a succeeded job (or one that diverged, at whatever
    step) suggests, as a new experiment linked to it (`repair_of`; on its MLflow run the tag
    `layerwise.repair_of` and the parent run); checked and queued as a submission is.

    Repairing a job again returns its pending or finished repair, or tries the next
    candidate: while your repair of it is queued or running, or once it finished and helped,
    the answer is that repair (200, the same id); once it finished without helping, the next
    ranked alternative of the job's diagnosis is submitted (201, `repair_candidate` one
    higher). Repairing a repair that did not help does the same from the job it repaired; a
    repair that helped but still has a problem is repaired by its own diagnosis's first fix.
    A repair helped when it is `healthy`, or its headline metric went at least half the way
    from the task's baseline to perfect (accuracy: from the class prior to 1.0; loss: from the
    baseline loss to 0). 404 when the job, or the job it repairs, is not yours; 409 when there
    is nothing to repair (not finished, no diagnosis, healthy, no fix, the data file at fault,
    every fix tried); a healthy run that `needs_more_epochs` is unfinished, and its repair
    trains it that many epochs longer."""
    try:
        record, created = await run_in_threadpool(
            repair.submit_repair, job, store=store, settings=settings, owner=principal.owner,
            admin=principal.admin, cluster=dispatcher, idempotency_key=idempotency_key)
    except repair.RepairRefused as exc:
        raise HTTPException(409, str(exc)) from None
    if not created:
        response.status_code = 200
    return _with_repair(record, store, principal)


def _with_repair(job: JobRecord, store: JobStore, principal: Principal) -> ExperimentRecord:
    """The record with its repair link, and before/after when the caller may see the
    repaired job."""
    # `repair_of` from the job's column, or from the tags of a record stored before it.
    record = ExperimentRecord(**{**job.model_dump(), "repair_of": repair.repair_of(job)})
    if record.repair_of is None:
        return record
    try:
        original = repair.visible(store, record.repair_of, principal.owner, principal.admin)
    except JobNotFound:  # not in this store, or not the caller's to see
        return record
    record.repair = BeforeAfter(**repair.before_after(original, job))
    return record


@router.post("/{job_id}/cancel", response_model=JobRecord)
def cancel_experiment(job: JobDep, store: StoreDep, dispatcher: DispatcherDep) -> JobRecord:
    """Cancel a queued or running job; a running job's Ray task is stopped."""
    if job.status in TERMINAL:
        raise HTTPException(409, f"job {job.id} is already {job.status}; only queued or "
                                 "running jobs can be cancelled")
    record = store.move(job.id, Status.CANCELLED, error="cancelled by request")
    JOBS_FINISHED.labels(job_type=record.job_type, status="cancelled").inc()
    if dispatcher is not None:  # its thread stops the Ray work (it may have started meanwhile)
        dispatcher.request_cancel(job.id)
    return record


@router.get("/{job_id}/metrics", response_model=MetricHistory | MetricKeys)
def metric_history(job: JobDep, settings: SettingsDep,
                   key: Annotated[str | None, Query(max_length=250)] = None
                   ) -> MetricHistory | MetricKeys:
    """A metric's history (step, value) from MLflow; without `key`, the keys logged so far."""
    if job.mlflow_run_id is None:
        raise HTTPException(409, f"job {job.id} has no MLflow run yet (status {job.status}); "
                                 "try again once it is running")
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    if key is None:
        return MetricKeys(keys=sorted(client.get_run(job.mlflow_run_id).data.metrics))
    history = client.get_metric_history(job.mlflow_run_id, key)
    points = sorted((MetricPoint(step=m.step, value=m.value, timestamp=m.timestamp)
                     for m in history), key=lambda p: p.step)
    return MetricHistory(key=key, points=points)
