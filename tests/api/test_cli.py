"""The `layerwise` command against a real server, and `layerwise serve` as its own process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from api.client import LayerwiseClient
from services.records import Progress
from tests.utils.server import ServerThread, free_port
from tests.utils.settings import local_settings
from tests.utils.specs import mlp_spec
from tests.utils.waiting import wait_until

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
    assert "val/accuracy" in status.stdout and "node_id" not in status.stdout  # metrics only
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


def test_no_service_is_one_line_with_the_fix_and_exit_2():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    for args in (("status", "abc123"), ("list",)):
        answer = _cli(*args, "--url", url, timeout=60)
        assert answer.returncode == 2, answer.stdout + answer.stderr
        said = (answer.stdout + answer.stderr).strip()
        assert "Traceback" not in said and len(said.splitlines()) == 1, said
        assert f"cannot reach the Layerwise service at {url}: connection refused" in said
        assert "make run" in said and "--url" in said and "LAYERWISE_URL" in said


@pytest.fixture(scope="module")
def paused_server(ray_cluster, tmp_path_factory) -> Iterator[ServerThread]:
    """A server whose dispatcher starts nothing: its jobs stay queued, saying why."""
    with ServerThread(local_settings(tmp_path_factory.mktemp("paused"))) as running:
        running.dispatcher.paused = True
        try:
            yield running
        finally:
            running.dispatcher.paused = False


def test_an_id_from_list_or_its_start_works_in_status_and_cancel(paused_server):
    url = paused_server.url
    job_id = paused_server.client().submit(mlp_spec(training={"epochs": 3})).id
    listed = subprocess.run([*LAYERWISE, "list", "--url", url], capture_output=True, text=True,
                            cwd=ROOT, timeout=120, env={**os.environ, "COLUMNS": "80"})
    assert job_id in listed.stdout, listed.stdout  # whole, at 80 columns
    status = _cli("status", job_id[:8], "--url", url)
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"{job_id}  queued  epoch 0/3" in status.stdout  # the spec's epochs before any
    assert "waiting: needs 1 CPU" in status.stdout and "dispatcher is paused" in status.stdout
    cancelled = _cli("cancel", job_id[:8], "--url", url)
    assert cancelled.returncode == 0 and f"{job_id} cancelled" in cancelled.stdout
    unknown = _cli("status", "ffffffffffff", "--url", url)  # uuid4 hex: not in a short list
    assert unknown.returncode == 1 and "404" in unknown.stdout and "no job" in unknown.stdout


def test_sweep_status_and_sweep_cancel_take_the_start_of_an_id(paused_server):
    sweep = {"name": "prefix-sweep", "base": mlp_spec(training={"epochs": 1}),
             "space": {"model.activation": {"type": "grid", "values": ["relu", "tanh"]}}}
    sweep_id = paused_server.client().submit_sweep(sweep).id
    shown = _cli("sweep-status", sweep_id[:8], "--url", paused_server.url)
    assert shown.returncode == 0 and f"sweep {sweep_id}" in shown.stdout, shown.stdout
    cancelled = _cli("sweep-cancel", sweep_id[:8], "--url", paused_server.url)
    assert cancelled.returncode == 0 and f"{sweep_id} cancelled" in cancelled.stdout


def test_submit_of_a_sweep_file_points_to_sweep_and_queues_nothing(paused_server):
    before = paused_server.client().list(limit=500).count
    refused = _cli("submit", "examples/sweep-lr-batch-asha.yaml", "--url", paused_server.url)
    assert refused.returncode == 1
    assert "layerwise sweep examples/sweep-lr-batch-asha.yaml" in refused.stdout
    assert paused_server.client().list(limit=500).count == before


def test_catalog_kind_prints_its_fields_with_choices(paused_server):
    shown = _cli("catalog", "mlp", "--url", paused_server.url)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    row = next(line for line in shown.stdout.splitlines() if "│ activation" in line)
    assert "choice" in row and "relu" in row and "sigmoid, tanh" in row
    assert "hidden" in shown.stdout and "list of int" in shown.stdout
    dataset = _cli("catalog", "sine", "--url", paused_server.url)
    assert dataset.returncode == 0 and "levels" in dataset.stdout
    assert "int [2..4096] | null" in dataset.stdout
    unknown = _cli("catalog", "nope", "--url", paused_server.url)
    assert unknown.returncode == 1 and "mlp" in unknown.stdout


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

        def ready() -> bool:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            return client.ready()

        wait_until(ready, 120, "the service to become ready", every=0.5)
        job = client.submit(mlp_spec(data={"name": "xor"}, training={"epochs": 1}))
        assert client.wait(job.id, timeout=120).status == "succeeded"
        assert (tmp_path / "home" / "jobs.db").exists()
        assert (tmp_path / "home" / "mlflow.db").exists()
        # SIGTERM (docker stop, systemd, Ctrl-C's sibling) to the service alone: a graceful
        # shutdown, and the local Ray it started goes with it.
        server.send_signal(signal.SIGTERM)
        # uvicorn shuts down, then raises the signal again so the exit status tells of it.
        assert server.wait(timeout=60) in (0, -signal.SIGTERM)
        stderr = server.stderr.read() if server.stderr else ""
        assert "Application shutdown complete" in stderr and "Traceback" not in stderr, stderr
        _wait_group_gone(server.pid, "the service's Ray to end with it")
    finally:
        _kill_group(server)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_group_gone(pgid: int, what: str, timeout_s: float = 30) -> None:
    """Every process of the group (the service or dispatcher and the Ray it started) exits."""
    wait_until(lambda: not _group_alive(pgid), timeout_s, what, every=0.5)


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
        _wait_group_gone(dispatcher.pid, "the dispatcher's Ray to end with it")
    finally:
        _kill_group(dispatcher)


def test_the_live_view_names_the_verdict_and_its_fix():
    from api.cli.output import live_verdict

    progress = Progress(epoch=3, diagnosis={"verdict": "symmetric", "findings": [
        {"verdict": "symmetric", "fix": {"model.init": "glorot_normal"}},
        {"verdict": "not_learning", "fix": {"optimizer.lr": 0.01}}]})
    assert live_verdict(progress) == "diagnosis symmetric (try model.init: glorot_normal)"
    assert live_verdict(Progress(diagnosis={"verdict": "healthy", "findings": []})) == \
        "diagnosis healthy"
    assert live_verdict(Progress(epoch=0)) == ""
