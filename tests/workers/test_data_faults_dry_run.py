"""The dry run at submission measures the training split: faults the data alone shows become
the record's `bad_data` diagnosis, data that cannot train and a misplaced `data.standardize`
are refused naming the field."""

from __future__ import annotations

import numpy as np
import pytest

from services.contract.spec import ExperimentSpec
from services.contract.spec_errors import SpecInvalid
from services.contract.verdicts import Verdict
from tests.utils.specs import mlp_spec
from workers.diagnostics.verdicts import Diagnosis, Finding
from workers.submission.applicability_checks import untrainable_data
from workers.submission.pipeline import check_experiment

RNG = np.random.default_rng(0)
X = RNG.normal(size=(300, 5)).astype(np.float32)
Y = (X[:, 0] > 0).astype(np.int64)


def file_spec(**data) -> ExperimentSpec:
    return ExperimentSpec.model_validate(mlp_spec(
        data={"source": "file", "name": None, "path": "wide.npz", **data},
        model={"hidden": [8]}, training={"epochs": 1}))


@pytest.fixture
def roots(tmp_path) -> list[str]:
    np.savez(tmp_path / "wide.npz", x=X * np.array([1, 1, 10, 4000, 1], np.float32), y=Y)
    return [str(tmp_path)]


def test_unscaled_inputs_go_to_the_record_with_their_fix(roots):
    dry = check_experiment(file_spec(), roots)
    assert dry.data_diagnosis is not None and dry.data_diagnosis["verdict"] == "bad_data"
    first = dry.data_diagnosis["findings"][0]
    assert first["evidence"]["fault"] == "unscaled_inputs"
    assert first["fix"] == {"data.standardize": "inputs"}
    assert check_experiment(file_spec(standardize="inputs"), roots).data_diagnosis is None


def test_standardized_targets_of_a_classifier_are_refused_at_the_field(roots):
    with pytest.raises(SpecInvalid) as refused:
        check_experiment(file_spec(standardize="targets"), roots)
    assert [e.loc for e in refused.value.errors] == [("data", "standardize")]


def test_values_that_are_not_finite_are_refused_naming_the_data():
    spec = file_spec()
    fault = Finding(Verdict.BAD_DATA, {"fault": "non_finite_data",
                                       "fix_in_file": "drop or fill those rows"})
    found = Diagnosis(Verdict.BAD_DATA, [fault], None, None, [], {}, [], {})
    errors = untrainable_data(spec, found)
    assert [(e.loc, e.msg) for e in errors] == [
        (("data", "path"), "non_finite_data: drop or fill those rows")]
    assert untrainable_data(spec, None) == []
