"""Property tests: any accepted spec builds and trains one step; any refused spec names a field."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from models.registry import model_kind
from services.contract.spec import ExperimentSpec
from services.contract.spec_errors import SpecInvalid
from workers.run import prepare, to_splits
from workers.submission.pipeline import check_experiment
from workers.training.build import build_trainer

numbers = st.one_of(st.integers(-3, 300), st.floats(-1.0, 2.0), st.just(float("nan")), st.none(),
                    st.text(max_size=3))
models = st.one_of(
    st.fixed_dictionaries({"kind": st.just("mlp")}, optional={
        "hidden": st.lists(st.integers(-1, 12), min_size=0, max_size=3),
        "activation": st.sampled_from(["relu", "tanh", "step", "prelu", "swish"]),
        "output": st.sampled_from(["auto", "linear", "sigmoid", "softmax", "hardlimit"]),
        "residual": st.booleans(), "init": st.sampled_from(["zeros", "he_normal", "bad"])}),
    st.fixed_dictionaries({"kind": st.sampled_from(["linear", "nope"])}, optional={
        "output": st.sampled_from(["auto", "linear", "sigmoid", "softmax", "hardlimit"])}),
)
specs = st.fixed_dictionaries({
    "data": st.fixed_dictionaries(
        {"name": st.sampled_from(["xor", "function", "blobs", "unknown"])},
        optional={"params": st.fixed_dictionaries({}, optional={
            "n": st.integers(-5, 80), "noise": numbers}),
            "val_fraction": st.floats(-0.1, 0.95)}),
    "model": models,
}, optional={
    "task": st.sampled_from(["auto", "classification", "binary", "regression", "recall"]),
    "loss": st.sampled_from(["auto", "mse", "cross_entropy", "bce", "perceptron", "l3"]),
    "optimizer": st.fixed_dictionaries({}, optional={
        "name": st.sampled_from(["sgd", "adam", "rmsprop", "lbfgs"]), "lr": numbers,
        "momentum": numbers, "nesterov": st.booleans()}),
    "training": st.fixed_dictionaries({}, optional={
        "batch_size": st.one_of(st.integers(-1, 50), st.just("full")),
        "grad_clip_norm": numbers}),
    "regularization": st.fixed_dictionaries({}, optional={
        "dropout": numbers, "l1": numbers, "input_noise_std": numbers}),
    "surprise": st.integers(),
})


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=specs)
def test_accepted_specs_run_a_step_and_refused_ones_name_a_field(payload):
    try:
        spec = ExperimentSpec.model_validate(payload)
        dry = check_experiment(spec, [])
    except ValidationError as exc:
        assert all(error["loc"] for error in exc.errors()), exc
        return
    except SpecInvalid as exc:
        assert exc.errors and all(error.loc and error.msg for error in exc.errors), exc
        return
    assert model_kind(spec.model.kind).kind == spec.model.kind
    run = dry.spec.model_copy(update={"training": dry.spec.training.model_copy(
        update={"epochs": 1})})
    bundle, objective, model = prepare(run, [], torch.device("cpu"))
    trainer = build_trainer(run, model, objective, to_splits(bundle, torch.device("cpu")),
                            device=torch.device("cpu"))
    try:
        trainer.fit()
    except RuntimeError as exc:  # a diverging lr is a legal spec; it must say so
        assert "diverged at step" in str(exc)
    assert trainer.step >= 1
