"""The specs in examples/ are in the served schema as examples of the submission they belong
to (api/openapi_examples.py); without an examples folder the schema is FastAPI's own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from api.app import create_app
from api.openapi_examples import EXAMPLES_DIR, add_spec_examples
from tests.utils.server import ServerThread
from tests.utils.settings import local_settings

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    server = ServerThread(local_settings(tmp_path_factory.mktemp("examples")), dispatcher=False)
    with server:
        yield server


def _examples(schema: dict, route: str) -> dict:
    body = schema["paths"][route]["post"]["requestBody"]["content"]["application/json"]
    return body.get("examples", {})


def test_every_example_file_is_an_example_of_its_submission(served):
    schema = served.http().get("/openapi.json").json()
    experiments, sweeps = (_examples(schema, "/v1/experiments"), _examples(schema, "/v1/sweeps"))
    files = sorted(EXAMPLES_DIR.glob("*.yaml"))
    assert len(experiments) + len(sweeps) == len(files) >= 10
    assert sweeps and all("base" in e["value"] and "space" in e["value"] for e in sweeps.values())
    assert not any("base" in e["value"] for e in experiments.values())
    for path in files:
        example = (sweeps if path.stem in sweeps else experiments)[path.stem]
        assert example["value"] == yaml.safe_load(path.read_text())
        assert example["description"]  # the file's leading comment: what to look at


def test_without_an_examples_folder_the_schema_is_unchanged(tmp_path):
    plain = create_app(local_settings(tmp_path), dispatcher=False).openapi()
    app = create_app(local_settings(tmp_path), dispatcher=False)
    add_spec_examples(app, tmp_path / "no-such-folder")
    assert app.openapi() == plain
