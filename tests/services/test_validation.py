"""The dry run at submission: what parses but cannot run is refused with the field."""

from __future__ import annotations

import numpy as np
import pytest

from services.spec import ExperimentSpec
from services.validation import SpecInvalid, check_experiment
from tests.utils.specs import mlp_spec


def _check(payload: dict, roots: list[str] | None = None):
    return check_experiment(ExperimentSpec.model_validate(payload), roots or [])


def _locs(payload: dict, roots: list[str] | None = None) -> list[tuple]:
    with pytest.raises(SpecInvalid) as info:
        _check(payload, roots)
    return [tuple(e.loc) for e in info.value.errors]


def test_a_good_spec_reports_parameters_and_fills_dataset_defaults():
    dry = _check(mlp_spec(data={"name": "xor"}, model={"hidden": [4]}))
    assert dry.param_count == 2 * 4 + 4 + 4 + 1 and dry.task == "binary"
    assert dry.spec.data.params == {"seed": 0, "n": 400, "noise": 0.1}


def test_refusals_name_the_field():
    assert _locs(mlp_spec(data={"name": "nope"})) == [("data", "name")]
    assert _locs(mlp_spec(data={"params": {"layout": "cube"}})) == [("data", "params", "layout")]
    assert _locs(mlp_spec(loss="bce")) == [("loss",)]
    assert _locs(mlp_spec(data={"name": "function"}, model={"output": "softmax"})) == [
        ("model", "output")]
    assert _locs(mlp_spec(regularization={"early_stopping": {
        "patience": 2, "monitor": "val/accuracy"}}, data={"name": "function"})) == [
        ("regularization", "early_stopping", "monitor")]
    assert _locs(mlp_spec(data={"val_fraction": 0.0}, regularization={
        "early_stopping": {"patience": 2}})) == [("regularization", "early_stopping", "monitor")]


def test_a_model_that_cannot_read_the_data_is_refused(tmp_path):
    np.savez(tmp_path / "seq.npz", x=np.zeros((20, 3, 4), dtype=np.float32),
             y=np.zeros(20, dtype=np.int64))
    # An MLP flattens any shape, so this runs; a file with strings does not.
    assert _check(mlp_spec(data={"source": "file", "name": None, "path": "seq.npz"}),
                  [str(tmp_path)]).param_count > 0
    np.savez(tmp_path / "text.npz", x=np.array([["a"]] * 5), y=np.zeros(5))
    assert _locs(mlp_spec(data={"source": "file", "name": None, "path": "text.npz"}),
                 [str(tmp_path)]) == [("data", "path")]
