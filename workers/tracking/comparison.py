"""Several runs' per-layer curves and their loss and accuracy curves, read back from MLflow, for
side-by-side comparison."""

from __future__ import annotations

import json
import math
import tempfile

import numpy as np
from mlflow.tracking import MlflowClient

from services.records import JobRecord
from services.run_comparison import EpochCurve, LayerSummary, RunComparison

# The epoch metrics a comparison overlays (docs/mlflow.md), those a run logged.
EPOCH_CURVE_KEYS = ("train/loss", "val/loss", "train/accuracy", "val/accuracy",
                    "train/mse", "val/mse")


def run_layers(client: MlflowClient, record: JobRecord) -> list[str]:
    """Layer names, input to output: from the diagnosis, else the run's `layers.json`."""
    if record.diagnosis and record.diagnosis.get("layers"):
        return list(record.diagnosis["layers"])
    assert record.mlflow_run_id is not None
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(record.mlflow_run_id, "layers.json", tmp)
        with open(path) as handle:
            return list(json.load(handle))


def layer_curves(client: MlflowClient, run_id: str, metric: str, layers: list[str]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(steps (S,), values (S, L)) of `metric/<layer>` for each layer; NaN where a layer has
    no value at a step."""
    histories = [{m.step: m.value for m in client.get_metric_history(run_id, f"{metric}/{layer}")}
                 for layer in layers]
    steps = np.array(sorted({step for history in histories for step in history}), dtype=int)
    values = np.array([[history.get(int(step), np.nan) for history in histories]
                       for step in steps]).reshape(len(steps), len(layers))
    return steps, values


def epoch_curves(client: MlflowClient, run_id: str) -> dict[str, EpochCurve]:
    """The run's loss and accuracy (or mse) curves by key, by step; a value that is not
    finite (a diverged run's loss) is None."""
    curves = {}
    for key in EPOCH_CURVE_KEYS:
        history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        if history:
            curves[key] = EpochCurve(
                steps=[step for step, _ in history],
                values=[value if math.isfinite(value) else None for _, value in history])
    return curves


def summarize(record: JobRecord, layers: list[str], values: np.ndarray,
              curves: dict[str, EpochCurve] | None = None) -> RunComparison:
    def stat(column: np.ndarray, last: bool) -> float | None:
        finite = column[np.isfinite(column)]
        if not finite.size:
            return None
        return float(finite[-1] if last else np.median(finite))

    ratio = None
    if values.size and len(layers) > 1:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = values[:, 0] / values[:, -1]
        finite = ratios[np.isfinite(ratios)]
        ratio = float(np.median(finite)) if finite.size else None
    return RunComparison(
        id=record.id, name=record.name, status=record.status,
        model_kind=str(record.spec.get("model", {}).get("kind", "")),
        verdict=(record.diagnosis or {}).get("verdict"), first_last_ratio=ratio,
        layers=[LayerSummary(layer=layer, median=stat(values[:, i], False),
                             last=stat(values[:, i], True)) for i, layer in enumerate(layers)],
        result=record.result or {}, curves=curves or {})
