"""The diagnosis engine is pure: importing it and diagnosing a run from plain data pulls in no
tracking (MLflow), no plotting (matplotlib) and no training code, in a fresh interpreter; and
its verdict names are the contract's, each with one entry in the remedies table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from services.contract.verdicts import Verdict
from workers.diagnostics.verdicts import ORDER, VERDICTS, remedies

ROOT = Path(__file__).resolve().parents[2]

# Diagnoses a stuck classifier from plain numpy data, then lists what got imported.
PROBE = """
import json, sys
import numpy as np
from services.contract.diagnostics_spec import DiagnosisThresholds
from workers.diagnostics.verdicts import Baseline, NormCurves, RunRecord, diagnose_record
layers = ["layers.0", "output"]
keys = [f"{kind}/{layer}" for kind in ("grad_norm", "update_norm", "weight_norm")
        for layer in layers]
norms = NormCurves(keys, np.arange(50), np.full((50, len(keys)), 0.5))
epochs = [{"train/loss": 2.3, "val/loss": 2.3, "val/accuracy": 0.1}] * 8
record = RunRecord(layers, DiagnosisThresholds(), norms=norms, epochs=epochs,
                   baseline=Baseline("class_prior", 2.3, 0.1))
diagnosis = diagnose_record(record)
print(json.dumps({"verdict": diagnosis.as_dict()["verdict"], "modules": sorted(sys.modules)}))
"""
HEAVY = ("mlflow", "matplotlib", "ray", "torch", "workers.training", "workers.tracking",
         "workers.runtime", "workers.diagnostics.session", "workers.diagnostics.history",
         "workers.diagnostics.live", "workers.diagnostics.sink")


def test_the_engine_imports_and_diagnoses_without_tracking_plots_or_training():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=120)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["verdict"] == "not_learning"  # it did diagnose, on plain data
    loaded = [m for m in probe["modules"]
              if any(m == heavy or m.startswith(f"{heavy}.") for heavy in HEAVY)]
    assert loaded == []


def test_the_verdict_names_are_the_contracts_and_each_has_one_remedy_entry():
    assert set(VERDICTS) == set(Verdict) and len(VERDICTS) == len(Verdict)
    assert Verdict.HEALTHY not in ORDER
    # Every problem a gradient kind can be called has its remedies; `no_gradients` is not a
    # problem a spec change fixes.
    assert set(remedies.TABLE) == set(ORDER) - {Verdict.NO_GRADIENTS}
    assert set(remedies.NO_GRADIENT_TABLE) <= set(ORDER)
