"""Why an attempt ended, and whether it counts: Ray's errors classified (the exception objects
Ray builds, with the messages it writes), and the retry-or-fail rule over a real job store."""

from __future__ import annotations

import pytest
import ray

from services.lifecycle import Status
from services.store import JobStore
from workers.runtime.attempts import (
    LAUNCH_FAILED,
    MEMORY_MONITOR,
    NODE_LOST,
    OOM_KILLED,
    SERVICE_RESTART,
    UNCOUNTED_MAX,
    WORKER_LOST,
    Ending,
    kernel_oom_kills,
    next_step,
    ray_ending,
)

# The head of what Ray 2.60's memory monitor writes (seen with RAY_memory_usage_threshold=0.04).
MONITOR = ("1 worker(s) were killed due to the node running low on memory. Memory on the node "
           "(IP: 10.0.0.2, ID: 07f7) was {node}GB used / 23.54GB limit (0.95)\n"
           "Selected to kill: (Task: job ID=01000000, task name=experiment_task, required "
           "resources={{CPU: 1}}, pid=12316, actual memory used={task}GB, worker ID=c5ed)\n")


def test_the_memory_monitor_killing_a_job_for_its_own_size_counts():
    ending = ray_ending(ray.exceptions.OutOfMemoryError(MONITOR.format(node=22.1, task=19.0)))
    assert ending is not None
    assert (ending.cause, ending.counted) == (MEMORY_MONITOR, True)
    assert "running low on memory" in ending.detail and "used 19 GB" in ending.detail


def test_the_memory_monitor_killing_a_small_job_among_big_others_does_not_count():
    ending = ray_ending(ray.exceptions.OutOfMemoryError(MONITOR.format(node=22.1, task=0.4)))
    assert ending is not None
    assert (ending.cause, ending.counted) == (MEMORY_MONITOR, False)


def test_a_memory_kill_whose_share_cannot_be_read_counts_as_the_jobs_own():
    ending = ray_ending(ray.exceptions.OutOfMemoryError("killed: low on memory"))
    assert ending == Ending(MEMORY_MONITOR, "killed: low on memory", counted=True)


@pytest.mark.parametrize(("error", "rose", "cause"), [
    (ray.exceptions.WorkerCrashedError(), False, WORKER_LOST),
    (ray.exceptions.WorkerCrashedError(), True, OOM_KILLED),
    (ray.exceptions.NodeDiedError("node 10.0.0.3 died"), False, NODE_LOST),
    (ray.exceptions.LocalRayletDiedError(), False, NODE_LOST),
])
def test_a_lost_worker_or_node_is_told_and_counts(error, rose, cause):
    ending = ray_ending(error, oom_kills_rose=rose)
    assert ending is not None and ending.cause == cause and ending.counted


def test_the_jobs_own_error_is_no_ending_of_the_worker():
    assert ray_ending(ray.exceptions.RayTaskError("f", "Traceback", ValueError("bad"))) is None
    assert ray_ending(ray.exceptions.TaskUnschedulableError("no node")) is None


def test_the_kernels_oom_count_is_read_here():
    assert isinstance(kernel_oom_kills(), int)  # Linux: /proc/vmstat has oom_kill


@pytest.fixture
def store(tmp_path) -> JobStore:
    return JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")


def _running(store: JobStore) -> str:
    record, _ = store.create(spec={}, spec_hash="h", name=None, project="p")
    store.claim([record.id])
    return record.id


def _end(store: JobStore, job_id: str, ending: Ending) -> Status:
    moved = store.end_attempt(job_id, lambda current: next_step(current, ending, "lost"))
    if moved.status == Status.QUEUED:
        store.claim([job_id])
    return Status(moved.status)


def test_uncounted_endings_do_not_use_up_attempts_and_are_logged(store):
    job_id = _running(store)
    restart = Ending(SERVICE_RESTART, "no heartbeat", counted=False)
    assert [_end(store, job_id, restart) for _ in range(4)] == [Status.QUEUED] * 4
    assert _end(store, job_id, Ending(WORKER_LOST, "died")) == Status.QUEUED
    assert _end(store, job_id, Ending(WORKER_LOST, "died")) == Status.QUEUED
    assert _end(store, job_id, Ending(WORKER_LOST, "died")) == Status.FAILED  # 3 counted
    record = store.get(job_id)
    assert [(e["attempt"], e["cause"], e["counted"]) for e in record.attempt_log] == [
        (1, SERVICE_RESTART, False), (2, SERVICE_RESTART, False), (3, SERVICE_RESTART, False),
        (4, SERVICE_RESTART, False), (5, WORKER_LOST, True), (6, WORKER_LOST, True),
        (7, WORKER_LOST, True)]
    assert record.error == "lost (after 3 counted attempts)"
    assert all(e["at"] for e in record.attempt_log)


def test_uncounted_retries_stop_at_their_bound(store):
    job_id = _running(store)
    ending = Ending(LAUNCH_FAILED, "Ray refused", counted=False)
    ends = [_end(store, job_id, ending) for _ in range(UNCOUNTED_MAX + 1)]
    assert ends == [Status.QUEUED] * UNCOUNTED_MAX + [Status.FAILED]
    assert f"retried {UNCOUNTED_MAX} times" in (store.get(job_id).error or "")


def test_a_job_killed_twice_for_its_own_memory_fails_with_the_fix(store):
    job_id = _running(store)
    own = Ending(MEMORY_MONITOR, "1 worker(s) were killed", counted=True)
    others = Ending(MEMORY_MONITOR, "1 worker(s) were killed", counted=False)
    assert _end(store, job_id, own) == Status.QUEUED  # the node may have been busy: once more
    assert _end(store, job_id, others) == Status.QUEUED  # others' memory: not held against it
    assert _end(store, job_id, own) == Status.FAILED
    error = store.get(job_id).error or ""
    assert error.startswith("the worker ran out of memory (killed by Ray's memory monitor")
    assert "lower training.batch_size" in error
