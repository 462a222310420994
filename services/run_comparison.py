"""The comparison table of several runs' per-layer curves (`GET /v1/compare`): plain
pydantic, so that the Python client reads it without what reads the curves from MLflow
(`workers.tracking.comparison`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

NormName = Literal["grad_norm", "update_norm", "weight_norm"]


class LayerSummary(BaseModel):
    layer: str
    median: float | None
    last: float | None


class EpochCurve(BaseModel):
    """One epoch metric of a run, as MLflow holds it: the optimizer step of each epoch's end
    and the value there (null where it was not finite)."""

    steps: list[int]
    values: list[float | None]


class RunComparison(BaseModel):
    """One run's row of the comparison table."""

    id: str
    name: str | None
    status: str
    model_kind: str
    verdict: str | None
    first_last_ratio: float | None  # median over steps of first layer / last layer
    layers: list[LayerSummary]
    result: dict[str, Any]
    curves: dict[str, EpochCurve] = Field(default_factory=dict, description=(
        "the run's loss and accuracy curves by metric key (`train/loss`, `val/loss`, "
        "`train/accuracy`, `val/accuracy`; `train/mse`, `val/mse` for a regression): the ones "
        "it logged"))


class Comparison(BaseModel):
    metric: NormName
    runs: list[RunComparison]
