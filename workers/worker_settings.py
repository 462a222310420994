"""What a worker needs from the service's settings. A module of its own, free of torch and
MLflow, because a sweep's trial actors unpickle it before they know whether they train."""

from __future__ import annotations

from dataclasses import dataclass, field

NAMESPACE = "layerwise"  # the Ray namespace of the service's named actors


@dataclass(frozen=True)
class WorkerSettings:
    """Passed with every task, since a worker on another node does not share the service's
    environment."""

    tracking_uri: str
    home: str
    data_roots: list[str] = field(default_factory=lambda: ["./data"])
    checkpoint_every_s: float = 2.0
    tune_storage: str | None = None  # sweeps' Tune state; default <home>/tune
    metrics_uri: str | None = None  # the tracking server's database, for bulk metrics
    max_data_bytes: int | None = None  # LAYERWISE_MAX_DATA_BYTES; None: the loaders' default
