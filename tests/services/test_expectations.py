"""`expect:`: its forms, the errors of a malformed one, and how each form is judged."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.contract.spec import ExperimentSpec
from services.contract.sweep_spec import SweepSpec
from tests.utils.specs import mlp_spec
from workers.diagnostics.expectation_checks import evaluate_experiment, evaluate_sweep

SPACE = {"model.activation": {"type": "grid", "values": ["sigmoid", "relu"]}}


def _errors(expect: object, *, sweep: bool = False) -> list[tuple[tuple, str]]:
    payload = ({"base": mlp_spec(), "space": SPACE, "repeat": 2, "expect": expect} if sweep
               else mlp_spec(expect=expect))
    with pytest.raises(ValidationError) as caught:
        (SweepSpec if sweep else ExperimentSpec).model_validate(payload)
    return [(e["loc"], e["msg"]) for e in caught.value.errors()]


def test_one_expectation_or_a_list_round_trips_as_written():
    spec = ExperimentSpec.model_validate(mlp_spec(expect={"metric": "val/accuracy", ">=": 0.9}))
    stored = spec.model_dump(mode="json")
    assert stored["expect"] == [{"metric": "val/accuracy", ">=": 0.9}]
    assert ExperimentSpec.model_validate(stored) == spec
    both = ExperimentSpec.model_validate(mlp_spec(expect=[
        {"diagnosis": "vanishing"}, {"metric": "val/loss", "<": 2, ">": 0}]))
    assert both.model_dump(mode="json")["expect"][1] == {"metric": "val/loss", ">": 0.0,
                                                          "<": 2.0}


@pytest.mark.parametrize(("expect", "where", "says"), [
    ({"diagnosis": "sad"}, ("expect", 0, "diagnosis"), "'vanishing'"),
    ({"metric": "val/accuracy"}, ("expect", 0, "metric"), "needs a bound"),
    ({"metric": "val/accuracy", "=>": 1}, ("expect", 0, "metric", "=>"), "Extra inputs"),
    ({"verdict": "healthy"}, ("expect", 0), "{diagnosis: <verdict>}"),
    ({"compare": {"metric": "val/loss", "better": {"a": 1}, "worse": {"a": 2}}}, ("expect", 0),
     "for a sweep"),
    ({"metric": "val/loss", "<": 1, "where": {"a": 1}}, ("expect", 0), "drop it"),
])
def test_a_malformed_expectation_is_refused_naming_the_field(expect, where, says):
    errors = _errors(expect)
    assert any(loc[:len(where)] == where and says in msg for loc, msg in errors), errors


def test_a_sweep_comparison_needs_two_different_groups():
    same = {"compare": {"metric": "val/loss", "better": {"a": 1}, "worse": {"a": 1}}}
    assert any("same trials" in msg for _, msg in _errors(same, sweep=True))
    loose = {"compare": {"metric": "val/loss", "better": {"a": 1}, "worse": {"a": 2},
                         "confidence": 1.5}}
    assert any(loc[-1] == "confidence" for loc, _ in _errors(loose, sweep=True))


def test_an_experiment_is_judged_on_its_metrics_and_its_diagnosis():
    spec = ExperimentSpec.model_validate(mlp_spec(expect=[
        {"metric": "val/accuracy", ">=": 0.9}, {"metric": "val/loss", "<": 0.1},
        {"diagnosis": "vanishing"}, {"diagnosis": "slow"}, {"metric": "missing", ">": 0}]))
    result = {"val/accuracy": 0.93, "val/loss": float("nan"),
              "diagnosis": {"verdict": "vanishing", "findings": [{"verdict": "vanishing"},
                                                                 {"verdict": "saturated"}]}}
    judged = evaluate_experiment(spec.expect, result)
    assert [j["held"] for j in judged] == [True, False, True, False, False]
    assert judged[0] == {"expect": {"metric": "val/accuracy", ">=": 0.9}, "observed": 0.93,
                         "held": True}
    assert judged[2]["observed"] == ["vanishing", "saturated"]


def _rows(values: dict[str, list[float]]) -> list[dict]:
    return [{"trial_id": f"{name}-{i}", "status": "succeeded", "params":
             {"model.activation": name}, "metric": v, "metrics": {"val/accuracy": v,
                                                                  "val/loss": 1 - v}}
            for name, vs in values.items() for i, v in enumerate(vs)]


def test_a_sweep_comparison_holds_only_beyond_its_confidence():
    sweep = SweepSpec.model_validate({
        "base": mlp_spec(), "space": SPACE, "repeat": 3,
        "search": {"metric": "val/accuracy", "mode": "max"},
        "expect": [{"compare": {"metric": "val/accuracy", "better": {"model.activation": "relu"},
                                "worse": {"model.activation": "sigmoid"}}},
                   {"compare": {"metric": "val/loss", "better": {"model.activation": "relu"},
                                "worse": {"model.activation": "sigmoid"}}},
                   {"metric": "val/accuracy", ">": 0.8, "where": {"model.activation": "relu"}}]})
    kwargs = {"search_metric": "val/accuracy", "search_mode": "max"}
    clear = evaluate_sweep(sweep.expect, _rows({"relu": [0.9, 0.92, 0.91],
                                                "sigmoid": [0.1, 0.12, 0.11]}), **kwargs)
    assert [j["held"] for j in clear] == [True, True, True]
    assert clear[0]["observed"]["p_value"] < 0.001 and clear[1]["observed"]["mode"] == "min"
    assert clear[2]["observed"] == pytest.approx(0.91)
    noisy = evaluate_sweep(sweep.expect, _rows({"relu": [0.9, 0.2, 0.6],
                                                "sigmoid": [0.5, 0.4, 0.6]}), **kwargs)
    assert [j["held"] for j in noisy] == [False, False, False]
    alone = evaluate_sweep(sweep.expect[:1], _rows({"relu": [0.9], "sigmoid": [0.1]}), **kwargs)
    assert not alone[0]["held"] and "repeat" in alone[0]["observed"]["why"]
