"""Schemathesis over the whole OpenAPI schema with every check it has (`--checks all`): no 5xx,
no response that breaks the schema, invalid data refused, valid data accepted, a 405 with the
right `Allow` for a method a path lacks, what was created readable afterwards (stateful phase,
over links Schemathesis infers from the schema). The examples phase submits the specs in
examples/ (api/openapi_examples.py puts them in the schema), so requests get past validation
to the dry run and the queue. tests/utils/schemathesis.toml says what is tuned, and why."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils.server import ServerThread
from tests.utils.settings import local_settings

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CONFIG = Path(__file__).parents[1] / "utils" / "schemathesis.toml"


@pytest.fixture(scope="module")
def fuzzed(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ServerThread]:
    home: Path = tmp_path_factory.mktemp("fuzz")
    settings = local_settings(home, max_queued_per_owner=100_000)
    server = ServerThread(settings)
    with server:
        server.dispatcher.paused = True  # generated specs that pass stay queued
        yield server


def test_generated_requests_pass_every_check(fuzzed, tmp_path):
    report = tmp_path / "report.json"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(CONFIG),
         "run", f"{fuzzed.url}/openapi.json", "--checks", "all",
         "--max-examples", "60", "--seed", "1",
         "--generation-deterministic", "--request-timeout", "30", "--phases",
         "examples,coverage,fuzzing,stateful", "--report", "ndjson",
         "--report-ndjson-path", str(report)],
        capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, _failures(done.stdout)
    requests = report.read_text().count('"ScenarioFinished"')
    assert requests >= 1, done.stdout[-2000:]


def _failures(stdout: str) -> str:
    """The failures section (each with its curl reproduction), then the summary."""
    start = stdout.find("FAILURES")
    return (stdout[start:start + 12_000] if start >= 0 else stdout[:6000]) + stdout[-1500:]
