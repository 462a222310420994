"""A setting that has nothing to act on in a kind or its data is refused at submission, naming
the field; it is never silently ignored."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from pydantic import ValidationError
from torch import nn

from models.base import DataShape, LayerwiseModel
from models.builders import build_model
from models.kinds.mlp import MLPConfig
from services.contract.applicability import checked_fields
from services.contract.regularization_spec import RegularizationSpec
from services.contract.sections import TrainingSpec
from services.contract.spec import ExperimentSpec
from services.contract.spec_errors import SpecInvalid
from tests.utils.specs import merge, mlp_spec
from workers.submission.applicability_checks import ForwardFacts, data_errors, model_errors
from workers.submission.pipeline import check_experiment


def refusal(spec: dict) -> dict[tuple, str]:
    with pytest.raises(SpecInvalid) as caught:
        check_experiment(ExperimentSpec.model_validate(spec), [])
    return {tuple(e.loc): e.msg for e in caught.value.errors}


def accepted(spec: dict) -> None:
    check_experiment(ExperimentSpec.model_validate(spec), [])


def linear_spec(**overrides) -> dict:
    spec = mlp_spec(**overrides)
    spec["model"] = {"kind": "linear"}
    return spec


@pytest.mark.parametrize(("regularization", "loc", "words"), [
    ({"dropout": 0.3}, ("regularization", "dropout"), "does not support dropout"),
    ({"activity_l1": 0.1}, ("regularization", "activity_l1"), "activity_regularization"),
    ({"activity_l2": 0.1}, ("regularization", "activity_l2"), "activity_regularization"),
    ({"dropout_inference": {"mode": "mc"}}, ("regularization", "dropout_inference", "mode"),
     "has no dropout"),
])
def test_settings_a_linear_model_has_nothing_for_are_refused(regularization, loc, words):
    errors = refusal(linear_spec(regularization=regularization))
    assert list(errors) == [loc] and words in errors[loc]


def test_weight_penalties_constraints_noise_and_clipping_apply_to_a_linear_model():
    accepted(linear_spec(regularization={"l1": 1e-4, "l2": 1e-4, "max_norm": 2.0,
                                         "non_neg": True, "input_noise_std": 0.1},
                         training={"grad_clip_norm": 1.0, "grad_clip_value": 1.0}))


def test_bit_flips_need_binary_inputs():
    errors = refusal(mlp_spec(regularization={"input_flip_prob": 0.1}))
    msg = errors[("regularization", "input_flip_prob")]
    assert "binary" in msg and "input_noise_std" in msg
    accepted(mlp_spec(regularization={"input_flip_prob": 0.1},
                      data={"params": {"binarize": True}}))


def test_early_stopping_monitors_only_what_is_logged():
    errors = refusal(mlp_spec(regularization={"early_stopping": {"patience": 2,
                                                                 "monitor": "val/f1"}}))
    msg = errors[("regularization", "early_stopping", "monitor")]
    assert "'val/f1' is not logged" in msg and "'val/accuracy'" in msg
    errors = refusal(mlp_spec(data={"val_fraction": 0.0},
                              regularization={"early_stopping": {"patience": 2}}))
    assert "needs validation data" in errors[("regularization", "early_stopping", "monitor")]
    penalty = {"early_stopping": {"patience": 2, "monitor": "train/penalty"}}
    assert ("regularization", "early_stopping", "monitor") in refusal(
        mlp_spec(regularization=penalty))
    accepted(mlp_spec(regularization={**penalty, "l2": 1e-4}))
    regression = {"data": {"name": "function"}, "regularization": {
        "early_stopping": {"patience": 2, "monitor": "val/mse"}}}
    accepted(mlp_spec(**regression))


def test_gaussian_noise_needs_real_valued_inputs_and_token_ids_are_not():
    noisy = ExperimentSpec.model_validate(mlp_spec(regularization={"input_noise_std": 0.1}))
    tokens = np.zeros((4, 7), dtype=np.float32)  # (N, T) ids, loaded as floats
    loc = ("regularization", "input_noise_std")
    [error] = data_errors(noisy, tokens, True, vocab_size=20)
    assert error.loc == loc and "token ids" in error.msg and "dropout" in error.msg
    [error] = data_errors(noisy, tokens.astype(np.int64), True)
    assert error.loc == loc and "real-valued" in error.msg
    assert data_errors(noisy, tokens, True) == []  # real values
    assert data_errors(ExperimentSpec.model_validate(mlp_spec()), tokens, True,
                       vocab_size=20) == []


def test_gaussian_noise_on_token_ids_is_refused_once_at_submission():
    with open("examples/char-lm.yaml") as f:
        spec = merge(yaml.safe_load(f), {"regularization": {"input_noise_std": 0.1},
                                         "model": {"hidden": 8, "layers": 1}})
    errors = refusal(spec)
    assert list(errors) == [("regularization", "input_noise_std")]
    assert "token ids" in errors[("regularization", "input_noise_std")]


def test_schedule_floor_above_the_learning_rate_is_refused():
    errors = refusal(mlp_spec(schedule={"name": "cosine", "min_lr": 0.1}))
    assert "above optimizer.lr" in errors[("schedule", "min_lr")]


def test_conflicting_norm_constraints_are_refused_by_the_schema():
    with pytest.raises(ValidationError, match="unit_norm and max_norm"):
        ExperimentSpec.model_validate(mlp_spec(regularization={"unit_norm": True,
                                                               "max_norm": 1.0}))


# -- structural checks on built models ---------------------------------------------------------
EVERYTHING_ON = {
    "regularization": {"l1": 0.1, "l2": 0.1, "activity_l1": 0.1, "activity_l2": 0.1,
                       "non_neg": True, "max_norm": 1.0},
    "training": {"grad_clip_norm": 1.0, "grad_clip_value": 1.0, "precision": "bf16"},
    "schedule": {"name": "cosine"},
}
FACTS = ForwardFacts(has_hidden=True, metric_keys=frozenset({"train/loss", "val/loss"}))


def test_a_kind_that_does_not_learn_by_gradients_refuses_gradient_settings():
    spec = ExperimentSpec.model_validate(mlp_spec(**EVERYTHING_ON))
    model = build_model(spec.model, DataShape((64,), 10, "classification"))
    model.uses_gradients = False  # as a Hopfield net or an RBM declares
    errors = {tuple(e.loc): e.msg for e in model_errors(spec, model, FACTS)}
    assert set(errors) == {
        ("regularization", f) for f in ("l1", "l2", "activity_l1", "activity_l2", "max_norm",
                                        "non_neg")
    } | {("training", "grad_clip_norm"), ("training", "grad_clip_value"),
         ("training", "precision"), ("schedule", "name")}
    assert all("does not learn by gradient descent" in msg for msg in errors.values())


class VectorOnly(LayerwiseModel):
    """A kind with a learned gain and nothing else: no matrix, no hidden layer."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(64))
        self.norm = nn.LayerNorm(64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x * self.gain)


def test_settings_with_nothing_to_act_on_in_the_built_model_are_refused():
    spec = ExperimentSpec.model_validate(mlp_spec(
        regularization={**EVERYTHING_ON["regularization"], "max_norm": None,
                        "unit_norm": True, "dropout": 0.2,
                        "dropout_inference": {"mode": "mc"}}))
    errors = {tuple(e.loc): e.msg
              for e in model_errors(spec, VectorOnly(), ForwardFacts(False, FACTS.metric_keys))}
    assert "no trainable weights to penalize" in errors[("regularization", "l1")]
    assert "no trainable weights to penalize" in errors[("regularization", "l2")]
    assert "no hidden activations" in errors[("regularization", "activity_l2")]
    assert "weights to constrain" in errors[("regularization", "unit_norm")]
    assert "weights to constrain" in errors[("regularization", "non_neg")]
    assert "no dropout layer" in errors[("regularization", "dropout")]
    assert ("regularization", "dropout_inference", "mode") in errors
    mlp = build_model(MLPConfig(hidden=[8]), DataShape((64,), 10, "classification"),
                      dropout=0.2)
    assert model_errors(spec, mlp, FACTS) == []


# Fields that apply to every kind, with the reason they need no check.
UNIVERSAL = {
    ("training", "epochs"), ("training", "batch_size"), ("training", "seed"),
    ("training", "max_runtime_s"),
    ("regularization", "penalize_biases"),  # only widens l1 / l2, which are checked
    ("regularization", "early_stopping"),  # the monitor is checked; the rest is the rule
    ("regularization", "dropout_inference"),  # its mode is checked
}


def test_every_regularization_and_training_field_is_checked_or_universal():
    fields = {("regularization", f) for f in RegularizationSpec.model_fields} | {
        ("training", f) for f in TrainingSpec.model_fields}
    checked = {loc[:2] for loc in checked_fields()}
    assert fields - checked - UNIVERSAL == set()


def test_a_spec_with_every_applicable_setting_passes():
    accepted(merge(mlp_spec(data={"params": {"binarize": True}}, model={"hidden": [16]}),
                   {"regularization": {"l1": 1e-5, "l2": 1e-4, "activity_l1": 1e-5,
                                       "max_norm": 3.0, "dropout": 0.2,
                                       "dropout_inference": {"mode": "mc", "samples": 4},
                                       "input_noise_std": 0.1, "input_flip_prob": 0.05,
                                       "early_stopping": {"patience": 3}},
                    "training": {"grad_clip_norm": 1.0, "batch_size": "full"},
                    "schedule": {"name": "warmup"}}))


def test_early_stopping_settings_without_patience_are_refused_not_ignored():
    with pytest.raises(ValidationError, match="monitor only act when early stopping is on"):
        ExperimentSpec.model_validate(mlp_spec(regularization={
            "early_stopping": {"monitor": "val/accuracy"}}))
    ExperimentSpec.model_validate(mlp_spec(regularization={
        "early_stopping": {"patience": None}}))
    dumped = ExperimentSpec.model_validate(mlp_spec()).model_dump(mode="json")
    assert ExperimentSpec.model_validate(dumped).regularization.early_stopping.patience is None


def test_mc_samples_without_mc_mode_are_refused():
    with pytest.raises(ValidationError, match="samples only act with mode: mc"):
        ExperimentSpec.model_validate(mlp_spec(regularization={
            "dropout": 0.2, "dropout_inference": {"samples": 5}}))
