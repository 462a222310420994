"""The spec: strict structure, the model union, flattening, hashing."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.contract.spec import ExperimentSpec
from tests.utils.specs import mlp_spec
from workers.tracking.spec_params import flatten


def _errors(payload: dict) -> list[tuple]:
    with pytest.raises(ValidationError) as info:
        ExperimentSpec.model_validate(payload)
    return [tuple(e["loc"]) for e in info.value.errors()]


def test_defaults_fill_everything_but_data_and_model():
    spec = ExperimentSpec.model_validate({"data": {"name": "xor"}, "model": {"kind": "linear"}})
    assert spec.project == "layerwise" and spec.training.epochs == 20
    assert spec.resources.cpus == 1 and spec.regularization.dropout == 0
    assert ("data",) in _errors({"model": {"kind": "mlp"}})
    assert ("model",) in _errors({"data": {"name": "xor"}})


def test_unknown_fields_are_refused_at_every_level():
    assert ("surprise",) in _errors(mlp_spec(surprise=1))
    assert ("optimizer", "momentumm") in _errors(mlp_spec(optimizer={"momentumm": 0.9}))
    assert ("model", "mlp", "depth") in _errors(mlp_spec(model={"depth": 3}))


def test_model_is_a_discriminated_union_on_kind():
    assert ("model",) in _errors(mlp_spec(model={"kind": "unknown"}))
    assert ("model", "linear", "hidden") in _errors(mlp_spec(model={"kind": "linear"}))
    assert ("model", "mlp", "activation") in _errors(mlp_spec(model={"activation": "swish"}))


def test_impossible_values_name_the_field():
    assert ("optimizer", "lr") in _errors(mlp_spec(optimizer={"lr": 0}))
    assert ("optimizer",) in _errors(mlp_spec(optimizer={"name": "adam", "nesterov": True}))
    assert ("data",) in _errors(mlp_spec(data={"source": "file", "name": None}))
    assert all(loc[:2] == ("training", "batch_size")
               for loc in _errors(mlp_spec(training={"batch_size": "half"})))
    assert ("training",) in _errors(mlp_spec(training={"batch_size": 0}))
    assert ("regularization", "dropout") in _errors(mlp_spec(regularization={"dropout": 1.0}))


def test_flatten_gives_dotted_params_and_the_hash_ignores_labels():
    spec = ExperimentSpec.model_validate(mlp_spec())
    flat = flatten(spec)
    assert flat["optimizer.lr"] == 0.003 and flat["model.hidden"] == [32, 32]
    assert flat["regularization.early_stopping.monitor"] == "val/loss"
    renamed = ExperimentSpec.model_validate(mlp_spec(name="other", tags={"a": "b"}))
    changed = ExperimentSpec.model_validate(mlp_spec(optimizer={"lr": 0.01}))
    assert spec.spec_hash() == renamed.spec_hash() != changed.spec_hash()
