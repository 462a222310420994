"""The diagnosis of a finished run, again, from what it recorded in MLflow, without training:
for tuning the engine's thresholds on runs already made.

Read back: the spec (`spec.yaml`, its thresholds and the fixes' spec), the per-layer norm
curves (`grad_norm/...`, `update_norm/...`, `weight_norm/...`), the epoch metrics (every
`train/` and `val/` key, one epoch per step they were logged at), the last activation sample
(each `activation/...` key's latest value), the final metrics (each key's latest value), and
from the recorded `diagnosis.json` what was measured on data MLflow does not keep: the layers
input to output, the task's baseline (measured on the training targets), and whether the kind
learns by gradients (its `no_gradients` finding), and the training split's statistics (its
`evidence.data`).

Not replayed: the symmetry check (it reads the trained weights' rows, which are not recorded),
and `detected_at_step`, which the live diagnosis set during training (the replay's is None).

    python -m workers.diagnostics.replay RUN_ID [--tracking-uri URI] [--threshold KEY=VALUE]

prints the diagnosis as JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import yaml
from mlflow.tracking import MlflowClient

from services.contract.diagnostics_spec import DiagnosisThresholds
from services.contract.spec import ExperimentSpec
from services.contract.tags import STORED
from services.contract.verdicts import Verdict
from workers.data.statistics import DataStats
from workers.diagnostics.verdicts import (
    Baseline,
    Diagnosis,
    NormCurves,
    RunRecord,
    diagnose_record,
)

NORM_PREFIXES = ("grad_norm/", "update_norm/", "weight_norm/")
EPOCH_PREFIXES = ("train/", "val/")
ACTIVATION_PREFIX = "activation/"


def replay(run_id: str, tracking_uri: str, *,
           thresholds: DiagnosisThresholds | None = None) -> Diagnosis:
    """The engine's diagnosis of the finished run `run_id`, from its recorded histories
    (with `thresholds` in place of the spec's, to try others)."""
    return diagnose_record(recorded_run(run_id, tracking_uri, thresholds=thresholds))


def recorded_run(run_id: str, tracking_uri: str, *,
                 thresholds: DiagnosisThresholds | None = None) -> RunRecord:
    """The `RunRecord` of a finished run, read back from MLflow."""
    client = MlflowClient(tracking_uri=tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        spec_text = Path(client.download_artifacts(run_id, "spec.yaml", tmp)).read_text()
        recorded = json.loads(
            Path(client.download_artifacts(run_id, "diagnosis.json", tmp)).read_text())
    spec = ExperimentSpec.model_validate(yaml.safe_load(spec_text), context=STORED)
    keys = list(client.get_run(run_id).data.metrics)
    histories = {key: _history(client, run_id, key) for key in keys
                 if key.startswith((*NORM_PREFIXES, *EPOCH_PREFIXES, ACTIVATION_PREFIX))}
    epoch_steps, epochs = _epochs({k: h for k, h in histories.items()
                                   if k.startswith(EPOCH_PREFIXES)})
    return RunRecord(
        list(recorded["layers"]), thresholds or spec.diagnostics.thresholds,
        norms=_norms({k: h for k, h in histories.items() if k.startswith(NORM_PREFIXES)}),
        epochs=epochs, epoch_steps=epoch_steps,
        activations={k: _latest(h) for k, h in histories.items()
                     if k.startswith(ACTIVATION_PREFIX)},
        baseline=_baseline(recorded.get("baseline")), spec=spec,
        uses_gradients=not any(_verdict(f) == Verdict.NO_GRADIENTS
                               for f in recorded.get("findings") or []),
        final={k: _latest(h) for k, h in histories.items() if k.startswith(EPOCH_PREFIXES)},
        data=_data_stats(recorded.get("evidence") or {}))


def _data_stats(evidence: Mapping[str, Any]) -> DataStats | None:
    """The training split's statistics the run measured (workers/data/statistics.py)."""
    data = evidence.get("data")
    return DataStats.from_dict(data) if isinstance(data, dict) else None


def _history(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    """{step: value}; a step logged twice keeps its last value."""
    ordered = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
    return {int(m.step): float(m.value) for m in ordered}


def _latest(history: Mapping[int, float]) -> float:
    return history[max(history)]


def _norms(histories: Mapping[str, Mapping[int, float]]) -> NormCurves | None:
    """One row per step any norm was logged at (NaN where a key was not)."""
    if not histories:
        return None
    keys = sorted(histories)
    steps = np.array(sorted({s for h in histories.values() for s in h}), dtype=np.int64)
    values = np.array([[histories[k].get(int(s), np.nan) for k in keys] for s in steps],
                      dtype=np.float64).reshape(len(steps), len(keys))
    return NormCurves(keys, steps, values)


def _epochs(histories: Mapping[str, Mapping[int, float]]
            ) -> tuple[list[int], list[dict[str, float]]]:
    """The epoch metrics in order: epoch metrics are logged at each epoch's last step."""
    steps = sorted({s for h in histories.values() for s in h})
    return steps, [{k: h[s] for k, h in histories.items() if s in h} for s in steps]


def _baseline(payload: Any) -> Baseline | None:
    if not isinstance(payload, Mapping) or not payload.get("kind"):
        return None
    return Baseline(str(payload["kind"]), payload.get("loss"), payload.get("accuracy"))


def _verdict(finding: Any) -> str:
    return str(finding.get("verdict")) if isinstance(finding, Mapping) else str(finding)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workers.diagnostics.replay",
                                     description="Diagnose a finished run again from MLflow.")
    parser.add_argument("run_id")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else ./mlruns)")
    parser.add_argument("--threshold", action="append", default=[], metavar="KEY=VALUE",
                        help="a diagnostics threshold to use instead of the spec's")
    args = parser.parse_args(argv)
    record = recorded_run(args.run_id, args.tracking_uri or mlflow.get_tracking_uri())
    if args.threshold:
        changed = dict(item.split("=", 1) for item in args.threshold)
        record.thresholds = DiagnosisThresholds.model_validate(
            {**record.thresholds.model_dump(), **changed})
    print(json.dumps(diagnose_record(record).as_dict(), indent=2))


if __name__ == "__main__":
    main()
