"""Response shapes beyond the job record itself."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from services.store import JobRecord


class ExperimentsPublic(BaseModel):
    data: list[JobRecord]
    count: int
    next_cursor: str | None


class MetricPoint(BaseModel):
    step: int
    value: float
    timestamp: int


class MetricHistory(BaseModel):
    key: str
    points: list[MetricPoint]


class MetricKeys(BaseModel):
    keys: list[str]




class Catalog(BaseModel):
    models: list[dict[str, Any]]
    datasets: list[dict[str, Any]]
    activations: list[str]
    initializers: list[str]
    regularizers: list[str]
    optimizers: list[str]
    schedules: list[str]
    losses: list[str]
