"""`search.prior`: an earlier sweep's trials, checked against the space (every path in it,
every value one its domain can give), refused for a grid, and encoded as Tune configs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.contract.sweep_spec import SweepSpec
from tests.utils.specs import mlp_spec


def _sweep(prior: list, algorithm: str = "tpe") -> dict:
    return {"base": mlp_spec(), "search": {"algorithm": algorithm, "prior": prior},
            "space": {"optimizer.lr": {"type": "loguniform", "low": 1e-3, "high": 1e-1},
                      "model.hidden": {"type": "choice", "values": [[4], [8, 8]]}}}


def test_a_prior_inside_the_space_is_kept_and_encoded_with_indices():
    sweep = SweepSpec.model_validate(_sweep([
        {"params": {"optimizer.lr": 0.01, "model.hidden": [8, 8]}, "metric": 0.3}]))
    assert sweep.encode(sweep.search.prior[0].params) == {"optimizer.lr": 0.01,
                                                          "model.hidden": 1}
    assert sweep.encode({"optimizer.lr": 0.01}) is None  # not every path: not told


@pytest.mark.parametrize("params,where", [
    ({"optimizer.momentum": 0.9}, "search.prior[0].params.optimizer.momentum: not a path"),
    ({"optimizer.lr": 0.5}, "search.prior[0].params.optimizer.lr: 0.5 is not a value"),
    ({"model.hidden": [16]}, "search.prior[0].params.model.hidden: [16] is not a value"),
    ({"optimizer.lr": "fast"}, "search.prior[0].params.optimizer.lr: 'fast' is not a value"),
])
def test_a_prior_outside_the_space_is_refused_naming_it(params, where):
    with pytest.raises(ValidationError, match=where.replace("[", r"\[").replace("]", r"\]")):
        SweepSpec.model_validate(_sweep([{"params": params, "metric": 1.0}]))


def test_a_grid_has_no_use_for_a_prior_and_a_metric_must_be_finite():
    with pytest.raises(ValidationError, match="a grid search runs every point"):
        SweepSpec.model_validate(_sweep([{"params": {"optimizer.lr": 0.01}, "metric": 1.0}],
                                        algorithm="grid"))
    with pytest.raises(ValidationError, match="metric"):
        SweepSpec.model_validate(_sweep([{"params": {"optimizer.lr": 0.01},
                                          "metric": float("nan")}]))


def test_tpe_is_told_the_prior_before_it_proposes():
    from workers.sweeps.driver import param_space, search_algorithm

    sweep = SweepSpec.model_validate(_sweep([
        {"params": {"optimizer.lr": 0.01, "model.hidden": [4]}, "metric": 0.7},
        {"params": {"optimizer.lr": 0.05, "model.hidden": [8, 8]}, "metric": 0.2},
        {"params": {"optimizer.lr": 0.02}, "metric": 0.1}]))  # not every path: left out
    searcher = search_algorithm(sweep)
    assert searcher.set_search_properties("val/loss", "min", param_space(sweep))
    told = searcher._ot_study.trials
    assert [t.value for t in told] == [0.7, 0.2]
    assert told[1].params == {"optimizer.lr": 0.05, "model.hidden": 1}
