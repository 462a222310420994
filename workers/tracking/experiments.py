"""The MLflow experiment a project's runs go to, created on first use (docs/mlflow.md)."""

from __future__ import annotations

import os
from pathlib import Path

from mlflow.tracking import MlflowClient


def artifact_location(tracking_uri: str, home: str) -> str | None:
    """Where a new experiment keeps artifacts: under the service's home for a local store;
    a tracking server decides for itself (it serves them)."""
    if tracking_uri.startswith(("http://", "https://")):
        return None
    return Path(os.path.abspath(home), "artifacts").as_uri()


def ensure_experiment(client: MlflowClient, project: str, *, tracking_uri: str, home: str) -> str:
    """The id of the MLflow experiment named `project`, created on first use."""
    existing = client.get_experiment_by_name(project)
    if existing is not None:
        return existing.experiment_id
    try:
        return client.create_experiment(
            project, artifact_location=artifact_location(tracking_uri, home))
    except Exception:  # another worker created it between our two calls
        existing = client.get_experiment_by_name(project)
        if existing is None:
            raise
        return existing.experiment_id
