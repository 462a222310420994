"""Response shapes beyond the job record itself."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from services.records import JobRecord


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


class BeforeAfter(BaseModel):
    """A repair judged on the headline metric of the job it repairs."""

    of: str = Field(description="the repaired job")
    metric: str = Field(description="val/accuracy for a classifier, val/loss otherwise")
    better: Literal["higher", "lower"]
    before: float | None = Field(description="the repaired job's value")
    after: float | None = Field(description="this job's value; null until it succeeded")
    helped: bool | None = Field(None, description="whether this repair helped (left the "
                                "problem): healthy, or the metric at least half the way from "
                                "the task's baseline to perfect (accuracy: from the class "
                                "prior to 1.0; loss: from the baseline loss to 0); null until "
                                "it ended (repairing the job again then tries its next fix)")


class AttemptEntry(BaseModel):
    """One attempt of a job that ended before the job did."""

    attempt: int = Field(description="which attempt (1 is the first launch)")
    cause: str = Field(description=(
        "worker_lost, node_lost, ray_system, oom_killed (the kernel's OOM killer, seen where "
        "Ray runs on the service's host), memory_monitor (Ray's), service_restart (its "
        "dispatcher stopped or stopped vouching for it) or launch_failed (Ray refused it)"))
    detail: str = Field(description="Ray's words, trimmed")
    at: str = Field(description="when it was recorded (ISO 8601, UTC)")
    counted: bool = Field(description=(
        "whether it used up one of max_attempts; the service's own trouble and memory "
        "kills while other processes held the node's memory do not"))


class ExperimentRecord(JobRecord):
    """A job, and for a repair (`POST /v1/experiments/{id}/repair`) its link and outcome."""

    # Typed here for the OpenAPI document; the store keeps the entries as it wrote them.
    attempt_log: list[AttemptEntry] = Field([], description=(  # type: ignore[assignment]
        "each attempt that ended before the job did, with its cause; `attempts` counts every "
        "launch, those not counted included"))

    repair_of: str | None = Field(None, description="the id of the job this one repairs")
    repair: BeforeAfter | None = Field(None, description="before and after, for a repair "
                                                         "whose repaired job you can see")




class Catalog(BaseModel):
    models: list[dict[str, Any]]
    datasets: list[dict[str, Any]]
    activations: list[str]
    initializers: list[str]
    regularizers: list[str]
    optimizers: list[str]
    schedules: list[str]
    losses: list[str]
