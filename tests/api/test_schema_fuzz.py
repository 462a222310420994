"""Schemathesis over the whole OpenAPI schema: no 5xx, no response that breaks the schema."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.settings import Settings
from tests.utils.server import ServerThread

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def fuzzed(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ServerThread]:
    home: Path = tmp_path_factory.mktemp("fuzz")
    settings = Settings(home=home / "home", data_roots=str(home), database_url=None,
                        mlflow_tracking_uri=None, ray_address=None, api_tokens=None,
                        admin_tokens=None)
    with ServerThread(settings) as server:
        server.dispatcher.paused = True  # generated specs that pass stay queued
        yield server


def test_generated_requests_get_no_server_error(fuzzed, tmp_path):
    report = tmp_path / "report.json"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "run",
         f"{fuzzed.url}/openapi.json", "--checks",
         "not_a_server_error,status_code_conformance,content_type_conformance,"
         "response_schema_conformance", "--max-examples", "60", "--seed", "1",
         "--generation-deterministic", "--request-timeout", "30", "--phases",
         "examples,coverage,fuzzing", "--report", "ndjson",
         "--report-ndjson-path", str(report)],
        capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-6000:]
    requests = report.read_text().count('"ScenarioFinished"')
    assert requests >= 1, done.stdout[-2000:]
