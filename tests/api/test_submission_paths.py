"""Experiments and sweeps go through one submission path: the same bad spec gets the same
refusal from /v1/experiments and, as a sweep's base, from /v1/sweeps (under `base`), at each
step (static checks, caps, resources, dry run), and the steps come in that order. Through the
real HTTP server, with a dispatcher on a CPU-only local Ray (for the resources step)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.utils.server import ServerThread
from tests.utils.settings import local_settings
from tests.utils.specs import merge, mlp_spec

pytestmark = [pytest.mark.e2e]

LINEAR = {"model": {"kind": "linear"}}


@pytest.fixture(scope="module")
def api(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    home: Path = tmp_path_factory.mktemp("paths")
    with ServerThread(local_settings(home, max_epochs=100)) as server:
        server.dispatcher.paused = True  # accepted jobs stay queued: nothing trains here
        yield server


def _spec(overrides: dict) -> dict:
    spec = merge(mlp_spec(), overrides)
    spec["model"] = overrides.get("model", spec["model"])  # another kind: its own fields only
    return spec


def _errors(http: httpx.Client, path: str, body: dict) -> list[tuple[list, str]]:
    answer = http.post(path, json=body)
    assert answer.status_code == 422, answer.text
    return [(error["loc"], error["msg"]) for error in answer.json()["errors"]]


def _both(api: ServerThread, spec: dict) -> tuple[list, list]:
    sweep = {"base": spec, "space": {"optimizer.lr": {"type": "loguniform", "low": 1e-3,
                                                      "high": 1e-1}}}
    with api.http() as http:
        return _errors(http, "/v1/experiments", spec), _errors(http, "/v1/sweeps", sweep)


@pytest.mark.parametrize("overrides, loc, words", [
    ({**LINEAR, "regularization": {"dropout": 0.3}}, ["regularization", "dropout"],
     "does not support dropout"),
    ({"training": {"epochs": 500}}, ["training", "epochs"], "LAYERWISE_MAX_EPOCHS"),
    ({"data": {"name": "adding", "params": {"n": 1_000_000, "length": 100_000}},
      "model": {"kind": "rnn"}}, ["data", "params"], "LAYERWISE_MAX_DATA_BYTES"),
    ({"resources": {"gpus": 1}}, ["resources", "gpus"], "largest node"),
    ({"resources": {"custom": {"tpu": 1}}}, ["resources", "custom", "tpu"], "largest node"),
    ({"loss": "bce"}, ["loss"], "loss"),
    ({"model": {"kind": "mlp", "hidden": [20001, 20000]}}, ["model"],
     "LAYERWISE_MAX_PARAMETERS"),
], ids=["static", "epochs-cap", "data-cap", "gpus", "custom", "dry-run", "parameter-cap"])
def test_both_routes_refuse_a_bad_spec_alike(api, overrides, loc, words):
    before = _counts(api)
    experiment, sweep = _both(api, _spec(overrides))
    assert [e_loc for e_loc, _ in experiment] == [loc]
    assert words in experiment[0][1]
    assert sweep == [(["base", *e_loc], msg) for e_loc, msg in experiment]
    assert _counts(api) == before  # nothing queued


def _counts(api: ServerThread) -> tuple[int, ...]:
    with api.http() as http:
        return tuple(http.get(path, params={"limit": 500}).json()["count"]
                     for path in ("/v1/experiments", "/v1/sweeps"))


@pytest.mark.parametrize("overrides, first", [
    # static checks, then caps, then resources, then the dry run: a spec that fails two steps
    # is refused by the earlier one, on both routes.
    ({**LINEAR, "regularization": {"dropout": 0.3}, "training": {"epochs": 500}},
     ["regularization", "dropout"]),
    ({"training": {"epochs": 500}, "resources": {"gpus": 1}}, ["training", "epochs"]),
    ({"resources": {"gpus": 1}, "loss": "bce"}, ["resources", "gpus"]),
], ids=["static-before-caps", "caps-before-resources", "resources-before-dry-run"])
def test_the_steps_come_in_order_on_both_routes(api, overrides, first):
    experiment, sweep = _both(api, _spec(overrides))
    assert [loc for loc, _ in experiment] == [first]
    assert [loc for loc, _ in sweep] == [["base", *first]]


def test_a_good_spec_is_queued_by_both_routes(api):
    spec = mlp_spec(name="both-routes")
    with api.http() as http:
        experiment = http.post("/v1/experiments", json=spec)
        sweep = http.post("/v1/sweeps", json={"base": spec, "space": {
            "optimizer.lr": {"type": "grid", "values": [0.01, 0.1]}}})
    assert experiment.status_code == 201, experiment.text
    assert sweep.status_code == 201, sweep.text
    assert experiment.json()["status"] == sweep.json()["status"] == "queued"
    assert sweep.json()["trials_total"] == 2
