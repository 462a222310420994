"""Nothing lost, nothing run twice: a killed Ray worker and a killed service, for real."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from api.client import LayerwiseClient
from tests.utils.postgres import empty_job_store, sqlite_and_postgres
from tests.utils.server import ServerThread, free_port
from tests.utils.settings import local_settings
from tests.utils.specs import mlp_spec
from tests.utils.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
# ~0.1 s an epoch here: progress reaches a client up to ~0.6 s late (reported and written at
# most every 0.25 s each), so the kill lands mid-training, well before the last epoch.
LONG = mlp_spec(model={"hidden": [64, 64]}, training={"epochs": 40, "batch_size": 32})


def _wait_for_epoch(client: LayerwiseClient, job_id: str, epoch: int, timeout: float = 180
                    ) -> dict:
    def at_epoch() -> dict | None:
        record = client.get(job_id)
        assert record["status"] in ("queued", "running"), record
        reached = record["status"] == "running" and record["progress"]["epoch"] >= epoch
        return record if reached else None

    return wait_until(at_epoch, timeout, f"job {job_id} to reach epoch {epoch}")


def _task_workers() -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "experiment_task" in cmdline and "ray::" in cmdline:
            found.append(process)
    return found


@pytest.fixture(scope="module")
def retrying(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[ServerThread]:
    home: Path = tmp_path_factory.mktemp("retry")
    settings = local_settings(home, checkpoint_every_s=0)
    with ServerThread(settings) as server:
        yield server


def test_a_killed_worker_is_retried_and_resumes_from_its_checkpoint(retrying):
    client = retrying.client()
    job = client.submit(LONG)
    running = _wait_for_epoch(client, job["id"], 3)
    workers = _task_workers()
    assert workers, "no Ray worker is running the task"
    for worker in workers:
        worker.send_signal(signal.SIGKILL)
    done = client.wait(job["id"], timeout=300)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 2
    assert done["result"]["resumed_from_epoch"] >= 3
    assert done["mlflow_run_id"] == running["mlflow_run_id"]
    run = MlflowClient(tracking_uri=retrying.settings.tracking_uri).get_run(
        done["mlflow_run_id"])
    assert run.info.status == "FINISHED"


def _serve(home: Path, port: int, database_url: str | None) -> subprocess.Popen:
    env = {**os.environ, "LAYERWISE_HOME": str(home), "LAYERWISE_RAY_NUM_CPUS": "1",
           "LAYERWISE_ORPHAN_AFTER_S": "2", "LAYERWISE_HEARTBEAT_S": "0.5",
           "LAYERWISE_CHECKPOINT_EVERY_S": "0", "COLUMNS": "200"}
    env.pop("RAY_ADDRESS", None)
    if database_url:
        env["LAYERWISE_DATABASE_URL"] = database_url
    return subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
                            cwd=home.parent, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _ready(client: LayerwiseClient, service: subprocess.Popen) -> None:
    def ready() -> bool:
        assert service.poll() is None, "the service exited"
        return client.ready()

    wait_until(ready, 180, "the service to become ready", every=0.3)


def _kill_group(service: subprocess.Popen) -> None:
    try:
        os.killpg(service.pid, signal.SIGKILL)  # the service and the Ray it started
    except ProcessLookupError:
        return
    service.wait(timeout=60)


PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture
def subreaper() -> Iterator[None]:
    """Make this process adopt the orphans of the killed service, as CI harnesses, `tini` and
    `systemd --user` do. Ray then misses that a worker's raylet died (it watches for a re-parent
    to PID 1), and only Layerwise's own guard stops the orphan."""
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = getattr(libc, "prctl", None)  # Linux only; elsewhere the test runs without it
    adopted = prctl is not None and prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    ours = {child.pid for child in psutil.Process().children()}
    yield
    if adopted:
        prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
    for child in psutil.Process().children():  # reap the adopted orphans, nothing else
        if child.pid not in ours and child.status() == psutil.STATUS_ZOMBIE:
            os.waitpid(child.pid, 0)


@pytest.mark.parametrize("backend", sqlite_and_postgres())
def test_a_killed_service_recovers_every_job_exactly_once(backend, tmp_path, subreaper):
    database_url = empty_job_store() if backend == "postgres" else None
    home = tmp_path / "home"
    port = free_port()
    client = LayerwiseClient(f"http://127.0.0.1:{port}")
    service = _serve(home, port, database_url)
    try:
        _ready(client, service)
        long_job = client.submit(LONG)
        queued = [client.submit(mlp_spec(name=f"queued-{i}")) for i in range(2)]
        running = _wait_for_epoch(client, long_job["id"], 3)
        assert all(client.get(j["id"])["status"] == "queued" for j in queued)
        _kill_group(service)  # SIGKILL: no shutdown code runs

        service = _serve(home, port, database_url)
        _ready(client, service)
        finals = {j["id"]: client.wait(j["id"], timeout=300) for j in [long_job, *queued]}
    finally:
        _kill_group(service)
    resumed = finals[long_job["id"]]
    assert resumed["status"] == "succeeded", resumed["error"]
    assert resumed["attempts"] == 2 and resumed["result"]["resumed_from_epoch"] >= 3
    assert resumed["mlflow_run_id"] == running["mlflow_run_id"]
    for job in queued:
        assert finals[job["id"]]["status"] == "succeeded"
        assert finals[job["id"]]["attempts"] == 1
    mlflow = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    for job_id, record in finals.items():
        runs = mlflow.search_runs([record["mlflow_experiment_id"]],
                                  filter_string=f"tags.`layerwise.job_id` = '{job_id}'")
        assert [r.info.run_id for r in runs] == [record["mlflow_run_id"]]
        assert runs[0].info.status == "FINISHED"
