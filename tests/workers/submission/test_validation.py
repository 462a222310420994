"""The dry run at submission: what parses but cannot run is refused with the field."""

from __future__ import annotations

import numpy as np
import pytest

from services.contract.spec import ExperimentSpec
from services.contract.spec_errors import SpecInvalid
from tests.utils.specs import mlp_spec
from workers.submission.pipeline import check_experiment


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


def test_a_spec_that_passed_is_not_dry_run_again_but_keeps_its_own_name(monkeypatch):
    from workers.submission import dry_run

    calls: list[str] = []
    real = dry_run._dry_run
    monkeypatch.setattr(dry_run, "_dry_run", lambda spec, roots, limits: (
        calls.append(spec.name) or real(spec, roots, limits)))
    first = ExperimentSpec.model_validate(mlp_spec(name="cache-a", training={"seed": 11}))
    again = ExperimentSpec.model_validate(mlp_spec(name="cache-b", training={"seed": 11},
                                                   tags={"t": "x"}))
    reseeded = ExperimentSpec.model_validate(mlp_spec(name="cache-c", training={"seed": 12}))
    other = ExperimentSpec.model_validate(mlp_spec(name="cache-d", training={"seed": 11},
                                                   optimizer={"lr": 0.01}))
    results = [check_experiment(s, []) for s in (first, again, reseeded, other)]
    # The name, tags and seed do not change what a dry run checks; the learning rate may.
    assert calls == ["cache-a", "cache-d"]
    assert results[1].spec.name == "cache-b" and results[1].spec.tags == {"t": "x"}
    assert results[2].spec.training.seed == 12
    assert results[1].spec.data == results[0].spec.data  # dataset defaults filled in
    assert results[1].param_count == results[0].param_count
