"""The dispatcher outlives what a bad job does to Ray: the progress board's process killed or
the board killed for good, and jobs Ray cannot launch. The queue keeps moving through each."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import ray

from api.client import LayerwiseClient
from tests.utils.server import ServerThread
from tests.utils.settings import local_settings
from tests.utils.specs import mlp_spec
from tests.utils.waiting import wait_until
from workers.runtime.progress_board import PROGRESS_BOARD
from workers.worker_settings import NAMESPACE

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
# A few seconds of training: still running when the board goes.
LONG = mlp_spec(training={"epochs": 30})


@pytest.fixture(scope="module")
def service(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[ServerThread]:
    home: Path = tmp_path_factory.mktemp("resilience")
    with ServerThread(local_settings(home)) as server:
        yield server


def _running(client: LayerwiseClient, job_id: str, timeout: float = 120) -> None:
    """Until the job has reported an epoch (through the board)."""
    def reported() -> bool:
        record = client.get(job_id)
        assert record.status in ("queued", "running"), record
        return record.status == "running" and record.progress.epoch >= 1

    wait_until(reported, timeout, f"job {job_id} to report its first epoch")


def _board_process() -> psutil.Process:
    """This session's board: a worker of the Ray this process started, titled by its actor."""
    found = [p for p in psutil.Process().children(recursive=True) if _titled_board(p)]
    assert len(found) == 1, found
    return found[0]


def _titled_board(process: psutil.Process) -> bool:
    try:  # earlier tests' workers may be ending: gone, or zombies without a command line
        return "ray::ProgressBoard" in " ".join(process.cmdline())
    except psutil.Error:
        return False


def test_the_queue_keeps_moving_after_the_boards_process_is_killed(service):
    client = service.client()
    before = client.submit(LONG)
    _running(client, before.id)
    board = _board_process()
    os.kill(board.pid, signal.SIGKILL)
    board.wait(timeout=30)

    after = client.wait(client.submit(mlp_spec()).id, timeout=120, poll_s=0.1)
    assert after.status == "succeeded", after.error
    done = client.wait(before.id, timeout=120, poll_s=0.1)
    assert done.status == "succeeded", done.error
    assert done.result  # its outcome came back with the task, whatever the board lost
    assert service.http().get("/readyz").status_code == 200


def test_a_board_killed_for_good_is_replaced_and_jobs_still_run(service):
    client = service.client()
    before = client.submit(LONG)
    _running(client, before.id)
    old = ray.get_actor(PROGRESS_BOARD, namespace=NAMESPACE)
    ray.kill(old, no_restart=True)

    after = client.wait(client.submit(mlp_spec()).id, timeout=120, poll_s=0.1)
    assert after.status == "succeeded", after.error
    assert after.progress.epoch == 2  # the new board carried its progress
    done = client.wait(before.id, timeout=120, poll_s=0.1)
    assert done.status == "succeeded", done.error
    # Its task found the new board by name: its last epoch's report arrives. A report and the
    # task's return travel apart, so the report may be written a drain after the outcome.
    last = LONG["training"]["epochs"]
    wait_until(lambda: client.get(before.id).progress.epoch == last, 15,
               f"the report of the last epoch ({last}) to arrive")
    new = ray.get_actor(PROGRESS_BOARD, namespace=NAMESPACE)
    assert new._actor_id != old._actor_id


@pytest.mark.parametrize("custom, reason", [
    ({"x": -5}, "Ray refused resources.custom {'x': -5}: The quantity of resource x cannot be "
                "negative"),
    ({"layerwise-gone": 1}, "no node in the cluster has what it needs now: 1 layerwise-gone "
                            "(the largest node has 0)"),
], ids=["refused", "vanished"])
def test_a_job_that_cannot_launch_fails_once_with_the_reason(service, custom, reason):
    # Straight into the store: submission refuses both (a resource may vanish after it).
    record, _ = service.app.state.store.create(
        spec=mlp_spec(resources={"custom": custom}), spec_hash="unlaunchable",
        name="unlaunchable", project="tests")
    service.dispatcher.wake()
    done = service.client().wait(record.id, timeout=20, poll_s=0.1)
    assert done.status == "failed"
    assert done.attempts == 1
    assert reason in done.error
    # The queue goes on.
    after = service.client().wait(service.client().submit(mlp_spec()).id, timeout=120,
                                  poll_s=0.1)
    assert after.status == "succeeded", after.error
