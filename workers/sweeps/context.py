"""What every trial of one sweep shares. Light (no torch, no MLflow): Tune's trial actors
unpickle it first thing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workers.worker_settings import WorkerSettings


@dataclass(frozen=True)
class TrialContext:
    """Put in the object store once by Tune (`tune.with_parameters`)."""

    sweep_id: str
    sweep: dict[str, Any]
    parent_run_id: str
    experiment_id: str
    settings: WorkerSettings
    board: Any
