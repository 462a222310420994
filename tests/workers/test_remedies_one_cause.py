"""One cause at a time: a finding's first fix changes the fewest settings that address its
verdict's cause (a rate far above its optimizer's usual one is that cause), the ranked
alternatives carry the rest, and every proposed rate stays inside its optimizer's known range
(workers/diagnostics/verdicts/remedies.py)."""

from __future__ import annotations

from typing import Any

import pytest

from services.contract.diagnostics_spec import DiagnosisThresholds
from services.contract.spec import ExperimentSpec
from services.contract.verdicts import Verdict
from tests.utils.specs import mlp_spec
from workers.diagnostics.verdicts import remedies
from workers.diagnostics.verdicts.baseline import Baseline
from workers.diagnostics.verdicts.record import Finding, RunRecord

# Settings that are one change together: an activation and the init matched to it, an
# optimizer and its own rate, a gated cell and the activation it has.
ONE_CHANGE = [{"model.activation", "model.init"}, {"optimizer.name", "optimizer.lr"},
              {"optimizer.name", "optimizer.lr", "optimizer.nesterov"},
              {"model.cell", "model.activation"}]


def ranked(verdict: str, **spec: Any) -> list[dict[str, Any]]:
    payload = mlp_spec(**spec)
    parsed = ExperimentSpec.model_validate(payload)
    record = RunRecord(["layers.0", "output"], DiagnosisThresholds(), spec=parsed)
    return remedies.candidates(Finding(verdict, {}), record)


SGD_FAR = {"optimizer": {"name": "sgd", "lr": 5.0}}  # 50x SGD's usual 0.1
ADAM = {"optimizer": {"name": "adam", "lr": 0.001}}


@pytest.mark.parametrize(("verdict", "spec", "first", "later"), [
    (Verdict.DIVERGED, SGD_FAR, {"optimizer.lr": 0.1}, {"training.grad_clip_norm": 1.0}),
    (Verdict.DEAD_UNITS, SGD_FAR, {"optimizer.lr": 0.1}, {"model.activation": "elu"}),
    (Verdict.DEAD_UNITS, ADAM, {"model.activation": "elu"}, {"optimizer.lr": 0.0001}),
    # a tiny init starts the units dead: the init, matched to ReLU, before the 10x rate
    (Verdict.DEAD_UNITS, {"optimizer": {"name": "adam", "lr": 0.01},
                          "model": {"init": "small_normal"}},
     {"model.init": "he_normal"}, {"optimizer.lr": 0.001}),
    (Verdict.SATURATED, {**SGD_FAR, "model": {"activation": "sigmoid"}}, {"optimizer.lr": 0.1},
     {"model.activation": "relu"}),
    (Verdict.SATURATED, {**ADAM, "model": {"activation": "tanh"}},
     {"model.activation": "relu"}, {"optimizer.lr": 0.0001}),
    (Verdict.UNSTABLE, {"optimizer": {"name": "sgd", "lr": 0.5}}, {"schedule.name": "cosine"},
     {"optimizer.lr": 0.25}),
    (Verdict.OVERFITTING, ADAM, {"regularization.dropout": 0.2},
     {"regularization.early_stopping.patience": 5}),
])
def test_the_first_fix_is_the_primary_cause_alone_and_the_rest_follow(verdict, spec, first,
                                                                       later):
    fixes = ranked(verdict, **spec)
    assert fixes[0] == first
    assert later in fixes[1:]


@pytest.mark.parametrize("verdict", sorted(remedies.TABLE))
@pytest.mark.parametrize("spec", [SGD_FAR, ADAM, {"optimizer": {"name": "sgd", "lr": 0.1},
                                                  "model": {"activation": "sigmoid"}}])
def test_every_first_fix_is_one_change_and_every_rate_is_known(verdict, spec):
    fixes = ranked(verdict, **spec)
    if fixes:
        keys = set(fixes[0])
        assert len(keys) == 1 or keys in ONE_CHANGE, (verdict, fixes[0])
    for fix in fixes:
        if "optimizer.lr" in fix:
            name = fix.get("optimizer.name", spec["optimizer"]["name"])
            low, high = remedies.KNOWN_LR[name]
            assert low <= fix["optimizer.lr"] <= high, (verdict, fix)


def test_a_regression_stuck_behind_a_sigmoid_output_gets_a_linear_output_first():
    """deepfd-48251943: signed targets through a sigmoid; no rate reaches them."""
    spec = ExperimentSpec.model_validate(mlp_spec(
        data={"name": "blobs"}, task="regression",
        model={"output": "sigmoid"}, loss="mse", optimizer={"name": "sgd", "lr": 0.1}))
    record = RunRecord(["layers.0", "output"], DiagnosisThresholds(), spec=spec,
                       baseline=Baseline("mean_predictor", 0.4, None))
    fixes = remedies.candidates(Finding(Verdict.NOT_LEARNING, {}), record)
    assert fixes[0] == {"model.output": "linear"}
    classifier = RunRecord(["layers.0", "output"], DiagnosisThresholds(), spec=spec,
                           baseline=Baseline("class_prior", 0.69, 0.5))
    assert {"model.output": "linear"} not in remedies.candidates(
        Finding(Verdict.NOT_LEARNING, {}), classifier)
