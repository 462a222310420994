"""Settings for tests: everything under one temporary folder, nothing from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.settings import Settings
from workers.worker_settings import WorkerSettings


def local_settings(root: Path, **overrides: Any) -> Settings:
    """The embedded defaults under `root`: SQLite job and MLflow stores in root/home, file
    datasets from root/data (created), a local Ray, no tokens. Every field a LAYERWISE_*
    variable of the test's environment could set to a server is given, so none leaks in."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    fields: dict[str, Any] = {
        "home": root / "home", "data_roots": str(root / "data"), "database_url": None,
        "mlflow_tracking_uri": None, "ray_address": None, "api_tokens": None,
        "admin_tokens": None}
    return Settings(**{**fields, **overrides})


def worker_settings(settings: Settings, **overrides: Any) -> WorkerSettings:
    """What the dispatcher hands a worker for `settings`: its tracking store, home and data."""
    return WorkerSettings(tracking_uri=settings.tracking_uri, home=str(settings.home_dir),
                          data_roots=settings.data_root_list, **overrides)
