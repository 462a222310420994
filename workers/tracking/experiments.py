"""The MLflow experiment a project's runs go to, created on first use (docs/mlflow.md)."""

from __future__ import annotations

import os
from pathlib import Path

from mlflow.tracking import MlflowClient

# MLflow 3's UI opens an experiment in its GenAI view (traces, an assistant pane) unless the
# experiment says it is for model training: its experiment-kind selector reads this tag.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
# The UI's own toggle (GenAI / Model training) wins over the tag in MLflow 3.17; a link that
# carries this query opens the model-training view whatever the browser last chose.
MODEL_TRAINING_VIEW_QUERY = "?workflowType=machine_learning"


def artifact_location(tracking_uri: str, home: str) -> str | None:
    """Where a new experiment keeps artifacts: under the service's home for a local store;
    a tracking server decides for itself (it serves them)."""
    if tracking_uri.startswith(("http://", "https://")):
        return None
    return Path(os.path.abspath(home), "artifacts").as_uri()


def ensure_experiment(client: MlflowClient, project: str, *, tracking_uri: str, home: str) -> str:
    """The id of the MLflow experiment named `project`, created on first use, marked as a
    model-training experiment (an existing one without a kind is marked too; a kind someone
    chose in the UI is kept)."""
    existing = client.get_experiment_by_name(project)
    if existing is not None:
        if EXPERIMENT_KIND_TAG not in existing.tags:
            client.set_experiment_tag(existing.experiment_id, EXPERIMENT_KIND_TAG,
                                      MODEL_TRAINING_KIND)
        return existing.experiment_id
    try:
        return client.create_experiment(
            project, artifact_location=artifact_location(tracking_uri, home),
            tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND})
    except Exception:  # another worker created it between our two calls
        existing = client.get_experiment_by_name(project)
        if existing is None:
            raise
        return existing.experiment_id


def run_page_path(experiment_id: str, run_id: str, tab: str = "") -> str:
    """The MLflow UI's route to a run (its `tab`: `artifacts/report.html`, `model-metrics`),
    in the model-training view; the UI's base URL goes before it."""
    tail = f"/{tab}" if tab else ""
    return f"#/experiments/{experiment_id}/runs/{run_id}{tail}{MODEL_TRAINING_VIEW_QUERY}"
