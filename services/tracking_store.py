"""Preparing the MLflow tracking store before any worker writes to it."""

from __future__ import annotations

from mlflow.tracking import MlflowClient


def prepare_tracking_store(tracking_uri: str) -> None:
    """Create (and migrate) a local MLflow database once, in the service, so that workers
    starting together do not race to create its tables."""
    MlflowClient(tracking_uri=tracking_uri).search_experiments(max_results=1)
