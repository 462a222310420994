"""What one request can make the API hold: measured on `layerwise serve` as its own process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.utils.raw_http import stream_chunked
from tests.utils.service_process import service_process
from tests.utils.specs import mlp_spec

pytestmark = [pytest.mark.e2e]
MB = 1 << 20


def peak_memory(process: psutil.Process) -> int:
    """The process's peak resident memory so far (VmHWM): a spike that was freed again before
    the answer still shows."""
    status = Path(f"/proc/{process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("VmHWM:"))) * 1024


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, psutil.Process]]:
    home: Path = tmp_path_factory.mktemp("edge")
    (home / "data").mkdir()
    with service_process(home, env={"LAYERWISE_API_TOKENS": "alice:tok-alice"}) as running:
        yield running


def test_a_chunked_body_is_refused_without_a_token_and_cut_at_the_limit_with_one(service):
    url, process = service
    before = peak_memory(process)
    status, _ = stream_chunked(url, "/v1/experiments", 100 * MB)
    assert status == 401
    status, sent = stream_chunked(url, "/v1/experiments", 100 * MB, token="tok-alice")
    assert status == 413
    assert sent < 100 * MB  # answered while the body was still coming
    assert peak_memory(process) - before < 50 * MB


@pytest.mark.parametrize("hidden", [[20001, 20000], [12000] * 20, [1000000, 1000000]],
                         ids=["400M-params", "20-layers-of-12000", "a-trillion-params"])
def test_a_model_over_the_parameter_cap_is_refused_without_being_built(service, hidden):
    url, process = service
    before = peak_memory(process)
    answer = httpx.post(f"{url}/v1/experiments", timeout=60,
                        headers={"Authorization": "Bearer tok-alice"},
                        json={"data": {"name": "digits"}, "model": {"kind": "mlp",
                                                                      "hidden": hidden}})
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["loc"] == ["model"]
    assert "LAYERWISE_MAX_PARAMETERS" in answer.json()["detail"]
    assert peak_memory(process) - before < 100 * MB
    assert process.is_running()
    ok = httpx.post(f"{url}/v1/experiments", json=mlp_spec(), timeout=60,
                    headers={"Authorization": "Bearer tok-alice"})
    assert ok.status_code == 201, ok.text
