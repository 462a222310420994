"""The `layerwise` command against a real server, and `layerwise serve` as its own process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from api.client import LayerwiseClient
from tests.utils.server import free_port
from tests.utils.specs import mlp_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
LAYERWISE = [sys.executable, "-m", "api.cli"]


def _cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([*LAYERWISE, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**os.environ, "COLUMNS": "200"})


def test_submit_wait_status_and_cancel(server, tmp_path):
    done = _cli("submit", "examples/mlp-digits.yaml", "--wait", "--url", server.url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded" in done.stdout and "val/accuracy" in done.stdout
    assert "MLflow run: http://" in done.stdout
    job_id = done.stdout.split("submitted ")[1].split()[0]
    status = _cli("status", job_id, "--url", server.url)
    assert status.returncode == 0 and "succeeded" in status.stdout
    late = _cli("cancel", job_id, "--url", server.url)
    assert late.returncode == 1 and "already succeeded" in late.stdout
    listed = _cli("list", "--url", server.url)
    assert job_id in listed.stdout


def test_a_refused_spec_file_prints_the_field(server, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(mlp_spec(optimizer={"lr": -1})))
    refused = _cli("submit", str(bad), "--url", server.url)
    assert refused.returncode == 1
    assert "422" in refused.stdout and "optimizer.lr" in refused.stdout


def test_serve_runs_as_a_process_on_embedded_defaults(tmp_path):
    port = free_port()
    env = {**os.environ, "LAYERWISE_HOME": str(tmp_path / "home"), "COLUMNS": "200",
           "LAYERWISE_RAY_NUM_CPUS": "1"}
    env.pop("RAY_ADDRESS", None)
    server = subprocess.Popen([*LAYERWISE, "serve", "--port", str(port)], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        client = LayerwiseClient(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 120
        while not client.ready():
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "the service did not become ready"
            time.sleep(0.5)
        job = client.submit(mlp_spec(data={"name": "xor"}, training={"epochs": 1}))
        assert client.wait(job["id"], timeout=120)["status"] == "succeeded"
        assert (tmp_path / "home" / "jobs.db").exists()
        assert (tmp_path / "home" / "mlflow.db").exists()
        # SIGTERM (docker stop, systemd, Ctrl-C's sibling) to the service alone: a graceful
        # shutdown, and the local Ray it started goes with it.
        server.send_signal(signal.SIGTERM)
        # uvicorn shuts down, then raises the signal again so the exit status tells of it.
        assert server.wait(timeout=60) in (0, -signal.SIGTERM)
        stderr = server.stderr.read() if server.stderr else ""
        assert "Application shutdown complete" in stderr and "Traceback" not in stderr, stderr
        _wait_group_gone(server.pid, "the service's Ray outlived it")
    finally:
        _kill_group(server)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_group_gone(pgid: int, message: str, timeout_s: float = 30) -> None:
    """Every process of the group (the service or dispatcher and the Ray it started) exits."""
    deadline = time.monotonic() + timeout_s
    while _group_alive(pgid):
        assert time.monotonic() < deadline, message
        time.sleep(0.5)


def _kill_group(process: subprocess.Popen) -> None:
    if _group_alive(process.pid):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def test_the_standalone_dispatcher_stops_on_sigterm_with_its_ray(tmp_path):
    env = {**os.environ, "LAYERWISE_HOME": str(tmp_path / "home"), "LAYERWISE_RAY_NUM_CPUS": "1"}
    env.pop("RAY_ADDRESS", None)
    dispatcher = subprocess.Popen([*LAYERWISE, "dispatcher"], cwd=tmp_path, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                  start_new_session=True)
    try:
        assert dispatcher.stdout is not None
        assert "dispatcher running" in dispatcher.stdout.readline()  # after Ray started
        dispatcher.send_signal(signal.SIGTERM)
        assert dispatcher.wait(timeout=60) == 0
        _wait_group_gone(dispatcher.pid, "the dispatcher's Ray outlived it")
    finally:
        _kill_group(dispatcher)
