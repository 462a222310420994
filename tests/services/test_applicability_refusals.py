"""A loss, output or task that disagree are refused at the field whose change fits the DATA
(its task and number of classes), with both ways out, through the real dry run."""

from __future__ import annotations

import pytest

from services.contract.spec import ExperimentSpec
from services.contract.spec_errors import SpecInvalid
from tests.utils.specs import mlp_spec
from workers.submission.pipeline import check_experiment


def refusal(**spec) -> dict[tuple, str]:
    with pytest.raises(SpecInvalid) as refused:
        check_experiment(ExperimentSpec.model_validate(mlp_spec(
            model={"hidden": [8], **spec.pop("model")}, training={"epochs": 1}, **spec)), [])
    return {tuple(e.loc): e.msg for e in refused.value.errors}


def test_a_sigmoid_over_ten_classes_with_cross_entropy_names_the_output():
    """deepfd-55328966: the published fix is the softmax, not the loss."""
    errors = refusal(model={"output": "sigmoid"}, loss="cross_entropy")
    assert list(errors) == [("model", "output")]
    assert "set model.output: softmax" in errors[("model", "output")]
    assert "10 classes" in errors[("model", "output")]
    assert "loss: mse" in errors[("model", "output")]  # the other way out


def test_a_softmax_over_one_unit_on_binary_data_names_the_output():
    errors = refusal(data={"name": "moons", "params": {"n": 200}}, task="binary",
                     model={"output": "softmax"}, loss="bce")
    assert list(errors) == [("model", "output")]
    assert "set model.output: sigmoid" in errors[("model", "output")]
    assert "task: classification" in errors[("model", "output")]


def test_a_binary_task_on_three_classes_names_the_output_and_loss_that_fit():
    """deepfd-50079585: one sigmoid unit with bce for 3 classes."""
    errors = refusal(data={"name": "blobs", "params": {"n": 300, "centers": 3}}, task="binary",
                     model={"output": "sigmoid"}, loss="bce")
    assert list(errors) == [("model", "output"), ("loss",), ("task",)]
    for loc in (("model", "output"), ("loss",)):
        assert "model.output: softmax" in errors[loc] and "3 classes" in errors[loc]
        assert "loss: cross_entropy" in errors[loc]
