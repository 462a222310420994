"""No value that cannot run or cannot be stored gets in, no input yields a 5xx, and a 5xx says
nothing of the internals; on SQLite and PostgreSQL, through the real HTTP server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.utils.postgres import fresh_database, sqlite_and_postgres
from tests.utils.server import ServerThread
from tests.utils.settings import local_settings
from tests.utils.specs import merge, mlp_spec

pytestmark = [pytest.mark.e2e]

@pytest.fixture(scope="module", params=sqlite_and_postgres())
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[ServerThread]:
    home: Path = tmp_path_factory.mktemp("inputs")
    database = fresh_database("layerwise_inputs") if request.param == "postgres" else None
    settings = local_settings(home, database_url=database, max_epochs=100,
                              max_trials_per_sweep=50, max_sweep_dry_runs=12)
    with ServerThread(settings, dispatcher=False) as server:
        yield server


def _post(api: ServerThread, path: str, body: dict, **kwargs: object) -> httpx.Response:
    with api.http() as client:
        return client.post(path, json=body, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("overrides, loc", [
    ({"optimizer": {"name": "adam", "betas": ["NaN", 0.999]}}, ["optimizer", "betas", 0]),
    ({"optimizer": {"lr": "Infinity"}}, ["optimizer", "lr"]),
    ({"training": {"seed": 2**32}}, ["training", "seed"]),
    ({"resources": {"custom": {"x": "NaN"}}}, ["resources", "custom", "x"]),
    ({"resources": {"custom": {"x": -5}}}, ["resources", "custom", "x"]),
    ({"data": {"params": {"seed": 2**40}}}, ["data", "params", "seed"]),
    ({"name": "a\x00b"}, ["name"]),
    ({"project": "p\x00"}, ["project"]),
    ({"tags": {"k": "v\x00"}}, ["tags"]),
    ({"tags": {"bad key!": "v"}}, ["tags", "bad key!", "[key]"]),
    ({"data": {"source": "file", "name": None, "path": "x\x00.npz"}}, ["data", "path"]),
    ({"data": {"name": "digit_captions"}, "model": {"kind": "captioner", "channels": [-1, 8]}},
     ["model", "captioner", "channels", 0]),
])
def test_values_that_cannot_run_or_be_stored_are_refused_with_their_path(api, overrides, loc):
    spec = merge(mlp_spec(), overrides)
    spec["model"] = overrides.get("model", spec["model"])  # another kind: its own fields only
    answer = _post(api, "/v1/experiments", spec)
    assert answer.status_code == 422, answer.text
    assert loc in [error["loc"][:len(loc)] for error in answer.json()["errors"]], answer.text


def test_non_finite_json_numbers_are_refused_with_their_path(api):
    """Python's JSON parser reads the bare tokens NaN and Infinity, which JSON does not have."""
    body = '{"data": {"name": "digits", "params": {"noise": NaN}}, "model": {"kind": "mlp"}}'
    with api.http() as client:
        answer = client.post("/v1/experiments", content=body,
                             headers={"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["loc"] == ["data", "params"]


@pytest.mark.parametrize("path", ["/v1/experiments?project=a%00b", "/v1/sweeps?project=%00",
                                  "/v1/experiments/abc%00def", "/v1/sweeps/%00/cancel"])
def test_a_nul_in_the_url_is_refused_not_an_error(api, path):
    with api.http() as client:
        answer = client.request("POST" if path.endswith("cancel") else "GET", path)
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["loc"][0] in ("path", "query")


def test_long_names_and_paths_are_refused(api):
    for overrides in ({"name": "n" * 300}, {"project": "p" * 300},
                      {"data": {"source": "file", "name": None, "path": "d/" * 2500 + "x.npz"}}):
        answer = _post(api, "/v1/experiments", merge(mlp_spec(), overrides))
        assert answer.status_code == 422, answer.text
        assert str(api.settings.data_root_list[0]) not in answer.text


def test_an_unexpected_error_shows_an_id_and_nothing_else_and_keeps_the_connection(api):
    secret = "SELECT password FROM users WHERE token = 'hunter2' /srv/layerwise/data"

    def broken() -> None:
        raise RuntimeError(secret)

    api.app.add_api_route("/v1/broken-for-test", broken, methods=["GET"])
    with api.http() as client:
        answer = client.get("/v1/broken-for-test")
        assert answer.status_code == 500
        assert answer.headers["content-type"].startswith("application/problem+json")
        problem = answer.json()
        assert len(problem["error_id"]) == 12 and problem["error_id"] in problem["detail"]
        assert "hunter2" not in answer.text and "SELECT" not in answer.text
        assert "RuntimeError" not in answer.text and "/srv" not in answer.text
        assert answer.headers.get("connection") != "close"
        assert client.get("/healthz").status_code == 200  # the same connection still serves


def test_an_idempotency_key_reused_with_another_body_is_refused(api):
    key = {"Idempotency-Key": f"reuse-{api.port}"}
    first = _post(api, "/v1/experiments", mlp_spec(name="first"), headers=key)
    assert first.status_code == 201
    same = _post(api, "/v1/experiments", mlp_spec(name="first"), headers=key)
    assert same.status_code == 200 and same.json()["id"] == first.json()["id"]
    other = _post(api, "/v1/experiments", mlp_spec(name="second"), headers=key)
    assert other.status_code == 422, other.text
    assert other.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    assert key["Idempotency-Key"] in other.json()["detail"]


def _sweep(**overrides: object) -> dict:
    return merge({"base": mlp_spec(), "space": {"optimizer.lr": {
        "type": "loguniform", "low": 1e-3, "high": 1e-1}}}, overrides)


@pytest.mark.parametrize("overrides, loc, cap", [
    ({"base": {"training": {"epochs": 50_000}}}, ["base", "training", "epochs"],
     "LAYERWISE_MAX_EPOCHS"),
    ({"space": {"training.epochs": {"type": "choice", "values": [2, 500]}}},
     ["space", "training.epochs"], "LAYERWISE_MAX_EPOCHS"),
    ({"search": {"num_samples": 51}}, ["search", "num_samples"],
     "LAYERWISE_MAX_TRIALS_PER_SWEEP"),
    ({"space": {"optimizer.momentum": {"type": "choice", "values": [
        round(0.04 * i, 2) for i in range(20)]}}}, ["space"],
     "LAYERWISE_MAX_SWEEP_DRY_RUNS"),
    ({"space": {"model.hidden": {"type": "choice", "values": [[8], [20000, 20000]]}}},
     ["space", "model.hidden"], "LAYERWISE_MAX_PARAMETERS"),
])
def test_sweeps_pass_the_same_caps_as_experiments(api, overrides, loc, cap):
    answer = _post(api, "/v1/sweeps", _sweep(**overrides))
    assert answer.status_code == 422, answer.text
    assert loc in [error["loc"] for error in answer.json()["errors"]], answer.text
    assert cap in answer.json()["detail"]


def test_the_largest_configuration_of_a_sweep_passes_the_parameter_cap(api):
    """Each value alone fits; wide layers with many input features together do not."""
    sweep = _sweep(base={"data": {"name": "blobs", "params": {"features": 5000}},
                         "model": {"hidden": [8]}},
                   space={"model.hidden": {"type": "grid", "values": [[8], [20000]]},
                          "data.params.features": {"type": "grid", "values": [2, 10000]}})
    answer = _post(api, "/v1/sweeps", sweep)
    assert answer.status_code == 422, answer.text
    assert "largest configuration" in answer.json()["detail"]
    assert "LAYERWISE_MAX_PARAMETERS" in answer.json()["detail"]


def test_a_generated_dataset_over_the_data_cap_is_refused_before_it_is_generated(api):
    spec = mlp_spec(data={"name": "adding", "params": {"n": 1_000_000, "length": 100_000}},
                    model={"kind": "rnn"})
    spec["model"] = {"kind": "rnn"}
    answer = _post(api, "/v1/experiments", spec)
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["loc"] == ["data", "params"]
    assert "LAYERWISE_MAX_DATA_BYTES" in answer.json()["detail"]
