"""A diverged run's diagnosis reaches the job record: the `Diverged` error carries it across
Ray's pickling to the dispatcher, which stores it with the failure; when the loop found NaN/inf
in the training split, the diagnosis blames the data file, not the rate."""

from __future__ import annotations

import pickle

from services.contract.diagnostics_spec import DiagnosisThresholds
from services.contract.spec import ExperimentSpec
from tests.utils.specs import mlp_spec
from workers.diagnostics.session import blame_the_data
from workers.diagnostics.verdicts import Divergence, RunRecord, diagnose_record
from workers.runtime.in_flight import _diagnosis_of_failure
from workers.training.loop import Diverged


def test_the_error_carries_its_diagnosis_through_pickling_to_the_record():
    error = Diverged("diverged at step 0: the training loss is inf", {"field": "y", "row": 3})
    error.diagnosis = {"verdict": "diverged", "findings": []}
    again = pickle.loads(pickle.dumps(error))  # as Ray hands a task's error over
    assert str(again) == str(error) and again.non_finite_data == {"field": "y", "row": 3}
    assert _diagnosis_of_failure(again) == {"diagnosis": {"verdict": "diverged",
                                                          "findings": []}}
    assert _diagnosis_of_failure(RuntimeError("out of memory")) == {}


def _diverged_at_step_0(spec: ExperimentSpec, where: dict | None = None):
    record = RunRecord(["layers.0", "output"], DiagnosisThresholds(), spec=spec)
    return diagnose_record(record, diverged=Divergence("diverged at step 0", 0, 4,
                                                       non_finite_data=where))


def test_nothing_measured_yet_still_gives_diverged_with_a_lower_rate():
    spec = ExperimentSpec.model_validate(mlp_spec(optimizer={"name": "sgd", "lr": 5.0}))
    diagnosis = _diverged_at_step_0(spec)
    assert diagnosis.verdict == "diverged" and diagnosis.detected_at_step == 0
    assert diagnosis.findings[0].fix["optimizer.lr"] < 5.0


def test_nan_in_the_training_split_blames_the_file_and_suggests_no_rate():
    spec = ExperimentSpec.model_validate(mlp_spec(
        data={"source": "file", "name": None, "path": "holes.npz"},
        optimizer={"name": "sgd", "lr": 5.0}))
    where = {"field": "y", "row": 7}
    diagnosis = _diverged_at_step_0(spec, where)
    blame_the_data(diagnosis, where, spec)
    assert diagnosis.verdict == "bad_data"
    primary = diagnosis.findings[0]
    assert primary.evidence["fault"] == "non_finite_data" and primary.fix == {}
    assert "holes.npz" in primary.evidence["fix_in_file"]
    assert "row 7" in primary.evidence["fix_in_file"]
    diverged = next(f for f in diagnosis.findings if f.verdict == "diverged")
    assert diverged.fix == {} and diverged.alternatives == []
    assert diverged.evidence["non_finite_data"] == where
