"""Submission refuses an `expect:` that could never be judged: a metric the run will not log,
or a sweep's selection by a path its space does not vary. The real dry run, without Ray."""

from __future__ import annotations

import pytest

from services.contract.spec import ExperimentSpec
from services.contract.spec_errors import SpecInvalid
from services.contract.sweep_spec import SweepSpec
from tests.utils.specs import mlp_spec
from workers.submission.pipeline import check_experiment, check_sweep


def _refusal(call, *args) -> list[tuple[tuple, str]]:  # noqa: ANN001
    with pytest.raises(SpecInvalid) as caught:
        call(*args, [])
    return [(e.loc, e.msg) for e in caught.value.errors]


def test_an_experiment_may_expect_what_it_logs_and_nothing_else():
    logged = [{"metric": "val/accuracy", ">=": 0.5}, {"metric": "train/accuracy", ">": 0},
              {"metric": "epochs_run", ">=": 2}]
    check_experiment(ExperimentSpec.model_validate(mlp_spec(expect=logged)), [])
    refused = _refusal(check_experiment, ExperimentSpec.model_validate(
        mlp_spec(expect=[{"metric": "val/accuracy", ">": 0}, {"metric": "val/mse", "<": 1}])))
    assert refused[0][0] == ("expect", 1, "metric")
    assert "'val/mse' is not a metric this run logs" in refused[0][1]
    assert "val/accuracy" in refused[0][1]  # the fix: what it does log


def test_a_sweep_selects_trials_by_the_paths_its_space_varies():
    sweep = {"base": mlp_spec(expect={"metric": "val/nope", "<": 1}), "repeat": 2,
             "space": {"model.activation": {"type": "grid", "values": ["relu", "tanh"]}}}
    refused = _refusal(check_sweep, SweepSpec.model_validate(sweep))
    assert refused[0][0] == ("base", "expect", 0, "metric")
    sweep["base"] = mlp_spec()
    sweep["expect"] = [{"compare": {"metric": "val/accuracy", "better": {"optimizer.lr": 0.1},
                                    "worse": {"model.activation": "tanh"}}}]
    refused = _refusal(check_sweep, SweepSpec.model_validate(sweep))
    assert refused[0][0] == ("expect", 0, "compare", "better")
    assert "optimizer.lr is not a path of the sweep's space (model.activation)" in refused[0][1]
