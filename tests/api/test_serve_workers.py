"""`layerwise serve --workers 2`: two API processes on one port beside one dispatcher process,
on one store. Distinct submissions sent at once, each twice with its Idempotency-Key (the two
copies may reach different processes), are each stored once, with no error, and the dispatcher
runs them: the first to success."""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from api.client import LayerwiseClient
from tests.utils.server import free_port
from tests.utils.service_process import LAYERWISE, stop_process_group
from tests.utils.specs import mlp_spec
from tests.utils.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SUBMISSIONS = 8


def _spec(i: int) -> dict:
    # The first runs first (priority), so the test waits for one training, not eight.
    return mlp_spec(name=f"workers-{i}", project="serve-workers", data={"name": "xor"},
                    model={"hidden": [8 + i]}, training={"epochs": 1},
                    priority=5 if i == 0 else 0)


def _api_processes(serve: psutil.Process) -> list[psutil.Process]:
    """uvicorn's worker processes under `serve` (not the dispatcher, nor multiprocessing's
    resource tracker)."""
    return [child for child in serve.children(recursive=True)
            if "multiprocessing.spawn" in " ".join(child.cmdline())
            and "spawn_main" in " ".join(child.cmdline())]


def test_two_api_processes_store_each_submission_once_and_one_dispatcher_runs_them(
        tmp_path: Path):
    (tmp_path / "data").mkdir()
    env = {**os.environ, "LAYERWISE_HOME": str(tmp_path / "home"),
           "LAYERWISE_DATA_ROOTS": str(tmp_path / "data"), "LAYERWISE_RAY_NUM_CPUS": "1"}
    for unset in ("LAYERWISE_DATABASE_URL", "LAYERWISE_MLFLOW_TRACKING_URI", "RAY_ADDRESS",
                  "LAYERWISE_API_TOKENS", "LAYERWISE_ADMIN_TOKENS"):
        env.pop(unset, None)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    serve = subprocess.Popen([*LAYERWISE, "serve", "--workers", "2", "--port", str(port)],
                             cwd=tmp_path, env=env, stdout=log.open("w"),
                             stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def up() -> bool:
            assert serve.poll() is None, log.read_text()[-3000:]
            return (httpx.get(f"{url}/healthz", timeout=2).status_code == 200
                    and "dispatcher running" in log.read_text())

        wait_until(up, 180, "the API processes and the dispatcher to start", every=0.3,
                   ignoring=(httpx.TransportError,))
        processes = psutil.Process(serve.pid)
        assert len(_api_processes(processes)) == 2, [c.cmdline() for c in processes.children()]

        def submit(i: int) -> tuple[int, int, str]:
            with httpx.Client(base_url=url, timeout=120) as client:
                answer = client.post("/v1/experiments", json=_spec(i % SUBMISSIONS),
                                     headers={"Idempotency-Key": f"key-{i % SUBMISSIONS}"})
                return i % SUBMISSIONS, answer.status_code, answer.text

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(submit, range(2 * SUBMISSIONS)))
        assert all(status in (200, 201) for _, status, _ in answers), answers
        ids: dict[int, set[str]] = {}
        for i, _, text in answers:
            ids.setdefault(i, set()).add(httpx.Response(200, text=text).json()["id"])
        assert all(len(found) == 1 for found in ids.values()), ids  # one job per key
        with LayerwiseClient(url) as client:
            stored = client.list(project="serve-workers", limit=100)
            assert stored.count == SUBMISSIONS
            assert {job.id for job in stored.data} == {next(iter(v)) for v in ids.values()}
            first = client.wait(next(iter(ids[0])), timeout=300, poll_s=0.3)
            assert first.status == "succeeded", first.error
    finally:
        stop_process_group(serve, grace=60)
    assert serve.returncode == 0, log.read_text()[-3000:]
