"""/v1/experiments/{id}/logs: the end of a job's worker log (`workers.runtime.job_log`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from api.deps import JobDep, SettingsDep
from api.errors import problem_responses
from api.job_logs import JobLog
from workers.runtime.job_log import read_tail

MAX_LINES = 5000
MAX_BYTES = 256 * 1024  # of the log's end read per request, whatever `tail` asks

router = APIRouter(prefix="/v1/experiments", tags=["experiments"],
                   responses=problem_responses(400, 401, 404, 409, 413, 422, 429, 500, 503))


@router.get("/{job_id}/logs", response_model=JobLog)
def job_log(job: JobDep, settings: SettingsDep,
            tail: Annotated[int, Query(ge=1, le=MAX_LINES)] = 200) -> JobLog:
    """The last `tail` lines (at most 256 KiB) of the job's worker log: each attempt's start,
    the worker's Python logging, stdout and stderr, a line per epoch, and the error that ended
    an attempt. 409 when the job has no log (it has not started, or it is a sweep)."""
    found = read_tail(settings.home_dir, job.id, lines=tail, max_bytes=MAX_BYTES)
    if found is None:
        why = ("it has not started yet" if job.status == "queued" else
               "a sweep's trials are followed with `sweep-status`" if job.job_type == "sweep"
               else "its worker kept none (it ran before logs were kept, or its log was pruned)")
        raise HTTPException(409, f"job {job.id} has no worker log: {why}")
    return JobLog(job_id=job.id, status=job.status, lines=found.lines,
                  truncated=found.truncated, size_bytes=found.size_bytes)
