"""The training split's statistics and the `bad_data` findings they make: each fault fires on a
mutation of a valid dataset, and none fires on the valid one (standardized features, balanced
labels, unit-scale targets)."""

from __future__ import annotations

import numpy as np
import pytest

from services.contract.diagnostics_spec import DiagnosisThresholds
from services.contract.spec import ExperimentSpec
from services.contract.verdicts import Verdict
from tests.utils.specs import mlp_spec
from workers.data.bundle import DataBundle, split
from workers.data.statistics import measure
from workers.diagnostics.verdicts import Divergence, RunRecord, diagnose_record
from workers.diagnostics.verdicts.data_faults import data_findings, submission_diagnosis

N, F = 600, 6
RNG = np.random.default_rng(0)
X = RNG.normal(size=(N, F)).astype(np.float32)
LABELS = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
TARGETS = (X @ RNG.normal(size=F) / 3).astype(np.float32).reshape(-1, 1)


def bundle(x=X, y=LABELS, task="classification") -> DataBundle:
    y = np.asarray(y)
    width = int(y.max()) + 1 if task == "classification" else 1
    return split(x, y, val_fraction=0.2, test_fraction=0.0, seed=0, task=task,
                 output_dim=width)


def faults(data: DataBundle) -> set[str]:
    return {f.evidence.get("kind", f.evidence["fault"]) for f in data_findings(measure(data))}


def spec(**data) -> ExperimentSpec:
    return ExperimentSpec.model_validate(mlp_spec(data={"source": "file", "name": None,
                                                        "path": "d.npz", **data}))


@pytest.mark.parametrize("task,y", [("classification", LABELS), ("regression", TARGETS),
                                    ("binary", LABELS)])
def test_valid_data_shows_no_fault(task, y):
    assert faults(bundle(y=y, task=task)) == set()


def column(scale=1.0, offset=0.0, at=3) -> np.ndarray:
    x = X.copy()
    x[:, at] = x[:, at] * scale + offset
    return x


@pytest.mark.parametrize("x", [column(scale=4000.0), column(offset=500.0),
                               column(scale=1e-5) * 5])
def test_inputs_far_from_unit_scale_or_far_apart_are_unscaled(x):
    assert faults(bundle(x=x)) == {"unscaled_inputs"}


def test_a_regression_to_targets_of_800_plus_minus_500_has_unscaled_targets():
    found = data_findings(measure(bundle(y=800 + 500 * TARGETS, task="regression")))
    assert [f.evidence["fault"] for f in found] == ["unscaled_targets"]
    assert found[0].evidence["target_mean"] == pytest.approx(800, abs=50)


def test_class_labels_stored_divided_by_255_taken_as_a_regression_are_suspect():
    found = data_findings(measure(bundle(y=(LABELS * 7 % 10) / 255.0, task="regression")))
    assert [f.evidence.get("kind") for f in found] == ["few_target_values"]
    assert "task: classification" in found[0].evidence["fix_in_file"]


def test_labels_with_most_classes_empty_or_one_dominant_are_suspect():
    assert faults(bundle(y=LABELS * 9)) == {"labels_out_of_range"}
    skewed = np.where(np.arange(N) % 20 == 0, 1, 0)
    assert faults(bundle(y=skewed)) == {"dominant_class"}


def test_non_finite_values_constant_features_and_shared_rows():
    holed = X.copy()
    holed[::50, 2] = np.nan
    assert "non_finite_data" in faults(bundle(x=holed))
    assert "non_finite_data" in faults(bundle(y=np.where(LABELS, np.inf, 0.5), task="regression"))
    assert faults(bundle(x=column(scale=0.0, offset=2.0))) == set()  # one of six: normal
    constant = X.copy()
    constant[:, :4] = 2.0
    assert faults(bundle(x=constant, y=(X[:, 4] > 0).astype(np.int64))) == {"constant_features"}
    data = bundle()
    data.x_val = data.x_train[: len(data.x_val)].copy()  # val copied from train
    found = data_findings(measure(data))
    assert [f.evidence["fault"] for f in found] == ["leaked_examples"]
    assert found[0].evidence["shared_with_train"]["val"] == 1.0


def test_rows_that_repeat_by_nature_do_not_count_as_leaked():
    bits = RNG.integers(0, 2, size=(N, 3)).astype(np.float32)  # 8 distinct rows
    assert "leaked_examples" not in faults(bundle(x=bits))


def test_the_scale_is_the_cause_of_a_poor_run_and_a_note_of_a_good_one():
    stats = measure(bundle(x=column(scale=4000.0)))
    thresholds = DiagnosisThresholds()
    poor = diagnose_record(RunRecord([], thresholds, spec=spec(), data=stats),
                           diverged=Divergence("loss is nan", 3))
    assert poor.verdict == Verdict.BAD_DATA
    assert [f.verdict for f in poor.findings] == [Verdict.BAD_DATA, Verdict.DIVERGED]
    assert poor.findings[0].fix == {"data.standardize": "inputs"}
    assert poor.findings[0].evidence["feature_std_max"] > 1000
    good = diagnose_record(RunRecord([], thresholds, spec=spec(), data=stats))
    assert good.verdict == Verdict.HEALTHY
    assert any("unscaled_inputs" in note for note in good.notes)
    clean = diagnose_record(RunRecord([], thresholds, spec=spec(), data=measure(bundle())),
                            diverged=Divergence("loss is nan", 3))
    assert clean.verdict == Verdict.DIVERGED  # fine data changes nothing


def test_leaked_examples_make_even_a_good_run_bad_data():
    data = bundle()
    data.x_val = data.x_train[: len(data.x_val)].copy()
    good = diagnose_record(RunRecord([], DiagnosisThresholds(), spec=spec(),
                                     data=measure(data)))
    assert good.verdict == Verdict.BAD_DATA
    assert good.findings[0].evidence["fault"] == "leaked_examples" and not good.findings[0].fix


def test_a_fix_extends_what_is_standardized_already():
    stats = measure(bundle(y=800 + 500 * TARGETS, task="regression"))
    on_inputs = submission_diagnosis(stats, spec(standardize="inputs"))
    assert on_inputs is not None
    assert on_inputs.findings[0].fix == {"data.standardize": "both"}
    assert submission_diagnosis(measure(bundle()), spec()) is None
