"""OPTIONS, HEAD and 405 name exactly the methods a path has (api/allow.py), on the real server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils.server import ServerThread
from tests.utils.settings import local_settings

pytestmark = [pytest.mark.e2e]

TOKEN = "tok-allow"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    home: Path = tmp_path_factory.mktemp("allow")
    settings = local_settings(home, api_tokens=f"alice:{TOKEN}")
    server = ServerThread(settings, dispatcher=False)  # routing only: no Ray needed
    with server:
        yield server


def _expected_allow(methods: set[str]) -> set[str]:
    return methods | {"OPTIONS"} | ({"HEAD"} if "GET" in methods else set())


def test_options_lists_every_method_the_schema_gives_each_path(served):
    schema = served.http().get("/openapi.json").json()
    http = served.http(TOKEN)
    for template, item in schema["paths"].items():
        path = re.sub(r"\{[^}]+\}", "some-id", template)
        response = http.options(path)
        assert response.status_code == 204, (path, response.text)
        assert response.content == b""
        allowed = {m.strip() for m in response.headers["allow"].split(",")}
        assert allowed == _expected_allow({m.upper() for m in item}), path


def test_a_method_the_path_lacks_is_405_naming_all_of_its_routes(served):
    # /v1/experiments is two routes (GET lists, POST submits): the router named only one.
    http = served.http(TOKEN)
    for method in ("PUT", "DELETE", "PATCH", "TRACE"):
        response = http.request(method, "/v1/experiments")
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, HEAD, OPTIONS, POST"
        assert response.headers["content-type"].startswith("application/problem+json")
        assert method in response.json()["detail"]
    response = http.get("/v1/experiments/some-id/cancel")
    assert (response.status_code, response.headers["allow"]) == (405, "OPTIONS, POST")


def test_head_answers_as_get_without_a_body(served):
    get, head = served.http().get("/healthz"), served.http().head("/healthz")
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == get.headers["content-length"]


def test_the_edge_still_wants_a_token_and_unknown_paths_stay_404(served):
    assert served.http().options("/v1/experiments").status_code == 401
    assert served.http().put("/v1/experiments").status_code == 401
    assert served.http(TOKEN).options("/v1/nothing-here").status_code == 404
    # Methods a route does take are untouched.
    assert served.http(TOKEN).get("/v1/experiments").status_code == 200
