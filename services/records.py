"""A job's record as the API shows it: plain pydantic, so that the Python client and the
`layerwise` command read the service's answers without the store's database layer
(`services.store` turns rows into these)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class Progress(BaseModel):
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    # A metric that was not finite (a diverging epoch's loss) is null in JSON.
    metrics: dict[str, float | None] = {}
    # The live diagnosis (verdict, findings, detected_at_step) as of the last epoch's end.
    diagnosis: dict[str, Any] | None = None


class JobRecord(BaseModel):
    """A job as the API shows it."""

    id: str
    job_type: str
    name: str | None
    project: str
    status: str
    spec: dict[str, Any]
    spec_hash: str
    priority: int
    attempts: int
    max_attempts: int
    owner: str
    sweep_id: str | None
    param_count: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: Progress
    error: str | None
    result: dict[str, Any] | None
    diagnosis: dict[str, Any] | None
    mlflow_run_id: str | None
    mlflow_experiment_id: str | None
    repair_of: str | None = None  # the job this one repairs (written by the service only)
    repair_candidate: int | None = None  # which of that job's candidate fixes it tries
    parent_run_id: str | None = None  # the MLflow run this job's run is a child of
    attempt_log: list[dict[str, Any]] = []  # each attempt that ended early, with its cause
    memory_estimate: dict[str, int] | None = None  # the dry run's peak-memory estimate, bytes
    waiting: str | None = None  # for a queued job: why it has not started yet
