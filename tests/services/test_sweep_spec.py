"""The sweep spec without Ray: domains, decoding Tune configs into trial specs, refusals at
submission with the field path and the fix, the trial table and the seed statistics."""

from __future__ import annotations

import glob
import math

import pytest
import yaml
from pydantic import ValidationError

from services.contract.spec import ExperimentSpec
from services.contract.spec_errors import SpecInvalid
from services.contract.sweep_spec import REPEAT_KEY, SweepSpec, apply_params
from services.sweep_table import best_trial, cancel_live_trials, merge_trials
from tests.utils.specs import mlp_spec
from workers.submission.pipeline import check_sweep
from workers.sweeps.summary import configuration_stats


def sweep_spec(**overrides) -> dict:
    base = mlp_spec(data={"name": "xor", "params": {"n": 64}}, model={"hidden": [4]},
                    training={"epochs": 3, "batch_size": 16})
    spec = {"name": "s", "base": base,
            "space": {"optimizer.lr": {"type": "loguniform", "low": 1e-3, "high": 1e-1}},
            "search": {"algorithm": "random", "num_samples": 2, "metric": "val/accuracy",
                       "mode": "max"}}
    spec.update(overrides)
    return spec


def refusals(spec: dict) -> dict[tuple, str]:
    with pytest.raises(SpecInvalid) as caught:
        check_sweep(SweepSpec.model_validate(spec), [])
    return {tuple(e.loc): e.msg for e in caught.value.errors}


def test_domains_decode_to_spec_values_and_every_trial_validates():
    sweep = SweepSpec.model_validate(sweep_spec(space={
        "model.hidden": {"type": "grid", "values": [[4], [8, 8]]},
        "model.activation": {"type": "choice", "values": ["tanh", "relu"]},
        "optimizer.lr": {"type": "uniform", "low": 0.01, "high": 0.1},
        "training.batch_size": {"type": "quniform", "low": 8, "high": 64, "q": 8},
        "training.epochs": {"type": "randint", "low": 1, "high": 4},
        "data.params.noise": {"type": "loguniform", "low": 0.01, "high": 0.5}},
        repeat=3))
    config = {"model.hidden": 1, "model.activation": 0, "optimizer.lr": 0.05,
              "training.batch_size": 27.0, "training.epochs": 2.0, "data.params.noise": 0.2,
              REPEAT_KEY: 2}
    params, repeat = sweep.decode(config)
    assert params == {"model.hidden": [8, 8], "model.activation": "tanh", "optimizer.lr": 0.05,
                      "training.batch_size": 24, "training.epochs": 2,
                      "data.params.noise": 0.2}
    assert isinstance(params["training.batch_size"], int) and repeat == 2
    spec = ExperimentSpec.model_validate(sweep.trial_payload(params, repeat, name="t"))
    assert spec.model.hidden == [8, 8] and spec.training.batch_size == 24
    assert spec.training.seed == 0 + 2 and spec.data.params["noise"] == 0.2
    assert spec.data.params["n"] == 64 and spec.name == "t"
    # PBT multiplies values by 0.8 or 1.2: they are clamped back into the validated domain.
    clamped, _ = sweep.decode({"optimizer.lr": 0.2, "training.batch_size": 80.0,
                               "training.epochs": 9})
    assert clamped == {"optimizer.lr": 0.1, "training.batch_size": 64, "training.epochs": 3}
    # 2 grid points x 2 samples x 3 seeds; TPE has no grid.
    assert sweep.trial_count() == 12
    tpe = SweepSpec.model_validate({**sweep.model_dump(), "search": {"algorithm": "tpe",
                                                                     "num_samples": 5}})
    assert tpe.trial_count() == 15


def test_switching_model_kind_keeps_only_the_fields_the_new_kind_has():
    base = ExperimentSpec.model_validate(mlp_spec(model={"hidden": [8], "activation": "tanh"}))
    payload = apply_params(base.model_dump(mode="json"),
                           {"model.kind": "linear", "model.hidden": [16]})
    linear = ExperimentSpec.model_validate(payload)
    assert linear.model.kind == "linear" and not hasattr(linear.model, "hidden")
    mlp = ExperimentSpec.model_validate(apply_params(base.model_dump(mode="json"),
                                                     {"model.kind": "mlp",
                                                      "model.hidden": [16]}))
    assert mlp.model.hidden == [16] and mlp.model.activation == "tanh"


def test_a_sweep_over_kinds_and_their_fields_is_accepted():
    checked = check_sweep(SweepSpec.model_validate(sweep_spec(space={
        "model.kind": {"type": "grid", "values": ["linear", "mlp"]},
        "model.hidden": {"type": "choice", "values": [[4], [8, 8]]}})), [])
    assert checked.trials == 4
    assert checked.sweep.base.data.params["noise"] == 0.1  # dataset defaults filled in


def test_refusals_name_the_path_and_the_fix():
    errors = refusals(sweep_spec(space={
        "optimizer.lrr": {"type": "uniform", "low": 0.1, "high": 0.2},
        "optimizer.lr.x": {"type": "uniform", "low": 0.1, "high": 0.2},
        "model.nope": {"type": "choice", "values": [1]},
        "model.activation": {"type": "grid", "values": ["relu", "nope"]},
        "model.hidden": {"type": "grid", "values": [[4], [0]]},
        "optimizer.momentum": {"type": "uniform", "low": 0.5, "high": 1.5},
        "training.epochs": {"type": "uniform", "low": 1, "high": 4},
        "data.params.noise": {"type": "choice", "values": [0.1, 50.0]}}))
    assert "no field 'lrr'" in errors[("space", "optimizer.lrr")]
    assert "is a value, not a section" in errors[("space", "optimizer.lr.x")]
    assert "no model kind" in errors[("space", "model.nope")]
    assert "'nope' (values[1])" in errors[("space", "model.activation")]
    assert "values[1]" in errors[("space", "model.hidden")]
    assert "high 1.5" in errors[("space", "optimizer.momentum")]
    assert "integers" in errors[("space", "training.epochs")]
    assert "50.0" in errors[("space", "data.params.noise")]
    assert len(errors) == 8


def test_bad_domains_are_refused_by_the_schema_with_the_fix():
    with pytest.raises(ValidationError) as caught:
        SweepSpec.model_validate(sweep_spec(space={
            "optimizer.lr": {"type": "loguniform", "low": 0.0, "high": 0.1}}))
    error = caught.value.errors()[0]
    assert tuple(error["loc"][:2]) == ("space", "optimizer.lr")
    assert "low > 0" in error["msg"] and "1.0e-5" in error["msg"]
    for bad in ({"type": "uniform", "low": 1, "high": 1}, {"type": "randint", "low": 3,
                                                           "high": 3},
                {"type": "choice", "values": []}, {"type": "normal", "mean": 0}):
        with pytest.raises(ValidationError):
            SweepSpec.model_validate(sweep_spec(space={"optimizer.lr": bad}))


def test_search_scheduler_and_metric_combinations_are_checked():
    errors = refusals(sweep_spec(search={"algorithm": "grid", "metric": "val/f1"}))
    assert "use type: grid" in errors[("space", "optimizer.lr")]
    assert "val/accuracy" in errors[("search", "metric")]
    errors = refusals(sweep_spec(search={"algorithm": "tpe"}, scheduler={"name": "pbt"}))
    assert "tpe" in errors[("scheduler", "name")]
    assert "lower it" in refusals(sweep_spec(
        scheduler={"name": "pbt", "perturbation_interval": 3}))[
        ("scheduler", "perturbation_interval")]
    errors = refusals(sweep_spec(base=mlp_spec(data={"name": "xor", "test_fraction": 0.2}),
                                 search={"metric": "test/accuracy", "mode": "max"},
                                 scheduler={"name": "asha"}))
    assert "val/" in errors[("search", "metric")]
    assert list(refusals(sweep_spec(base=mlp_spec(loss="bce")))) == [("base", "loss")]


def test_every_example_sweep_is_accepted():
    files = sorted(glob.glob("examples/sweep-*.yaml"))
    assert len(files) >= 3
    counts = {}
    for path in files:
        with open(path) as f:
            counts[path] = check_sweep(SweepSpec.model_validate(yaml.safe_load(f)), []).trials
    assert counts["examples/sweep-activation-depth.yaml"] == 3 * 2 * 2 * 3
    assert counts["examples/sweep-regularizer-ablation.yaml"] == 8 * 5


def test_seeds_give_a_mean_and_a_95_percent_interval_per_configuration():
    rows = [{"trial_id": f"t{i}", "status": "succeeded", "params": {"a": a}, "metric": m}
            for i, (a, m) in enumerate([("relu", 0.9), ("relu", 0.8), ("relu", 0.85),
                                        ("sigmoid", 0.5), ("sigmoid", 0.7), ("sigmoid", 0.6)])]
    rows.append({"trial_id": "t6", "status": "failed", "params": {"a": "relu"}})
    rows.append({"trial_id": "t7", "status": "early_stopped", "params": {"a": "relu"},
                 "metric": 0.1})
    stats = configuration_stats(rows, "max")
    assert [c["params"]["a"] for c in stats] == ["relu", "sigmoid"]
    relu = stats[0]
    assert relu["n"] == 3 and relu["mean"] == pytest.approx(0.85) and relu["stopped"] == 1
    assert relu["std"] == pytest.approx(0.05)
    half = 4.302652729911275 * 0.05 / math.sqrt(3)  # t(0.975, 2)
    assert relu["ci95"] == pytest.approx([0.85 - half, 0.85 + half])
    assert configuration_stats(rows, "min")[0]["params"]["a"] == "sigmoid"


def test_trial_table_merges_reports_and_keeps_final_statuses():
    rows = merge_trials([], {"b": {"status": "running", "metrics": {"val/loss": 1.0}},
                             "a": {"status": "queued"}})
    assert [r["trial_id"] for r in rows] == ["a", "b"]
    rows = merge_trials(rows, {"b": {"status": "succeeded", "metric": 0.5,
                                     "metrics": {"val/accuracy": 0.5}}})
    rows = merge_trials(rows, {"b": {"status": "running", "epoch": 3}})  # a late report
    b = rows[1]
    assert b["status"] == "succeeded" and b["epoch"] == 3
    assert b["metrics"] == {"val/loss": 1.0, "val/accuracy": 0.5}
    rows = merge_trials(rows, {"c": {"status": "early_stopped", "metric": 0.9},
                               "d": {"status": "failed", "metric": 0.99}})
    assert best_trial(rows, "max")["trial_id"] == "b"  # finished trials first
    assert best_trial(rows[2:3], "max")["trial_id"] == "c"
    assert [r["status"] for r in cancel_live_trials(rows)] == [
        "cancelled", "succeeded", "early_stopped", "failed"]
