"""Why a job's attempt ended before the job did, and whether that attempt counts against the
job's `max_attempts`: each such ending is one entry of the record's `attempt_log`.

Counted: the worker or its node was lost (`worker_lost`, `node_lost`, `ray_system`), or the job
was killed for memory it used itself (`oom_killed` by the kernel, `memory_monitor` by Ray). Not
counted: the service's own trouble, which says nothing of the job: its dispatcher stopped
(`service_restart`), Ray could not take the launch (`launch_failed`), or Ray's memory monitor
killed it while other processes held most of the node's memory. Uncounted retries stop at
UNCOUNTED_MAX, so nothing loops forever.

A job killed for its own memory is retried once (the node may have been busy with more than
the job) and fails at its second such kill, with the fix.

What can be told apart: Ray's memory monitor names the memory its victim used and the node's,
so "its own" is a share of the node's use (OWN_SHARE). A kernel OOM kill reaches Ray as a plain
worker crash; it is recognised by the kernel's OOM-kill counter rising while the job ran, which
the service can read only when Ray runs on its own host (no LAYERWISE_RAY_ADDRESS). Elsewhere it
reads `worker_lost`. The kernel does not say how much the victim used: such a kill counts as
the job's own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from services.lifecycle import Status, now
from services.records import JobRecord

WORKER_LOST, NODE_LOST, RAY_SYSTEM = "worker_lost", "node_lost", "ray_system"
OOM_KILLED, MEMORY_MONITOR = "oom_killed", "memory_monitor"
SERVICE_RESTART, LAUNCH_FAILED = "service_restart", "launch_failed"
MEMORY_CAUSES = frozenset({OOM_KILLED, MEMORY_MONITOR})
UNCOUNTED_MAX = 10
# A memory-monitor victim that used at least this share of the node's used memory was killed
# for its own size; below it, others held the memory.
OWN_SHARE = 0.5
DETAIL_CHARS = 300

_NODE_USED = re.compile(r"was ([\d.]+)\s*GB(?: used)? / ([\d.]+)\s*GB")
_TASK_USED = re.compile(r"memory used=([\d.]+)\s*GB")
_OOM_COUNTERS = (Path("/proc/vmstat"), Path("/sys/fs/cgroup/memory.events"))


@dataclass(frozen=True)
class Ending:
    """How one attempt ended early."""
    cause: str
    detail: str
    counted: bool = True

    def entry(self, attempt: int) -> dict[str, Any]:
        return {"attempt": attempt, "cause": self.cause, "detail": self.detail[:DETAIL_CHARS],
                "at": now().isoformat(), "counted": self.counted}


def ray_ending(exc: BaseException, *, oom_kills_rose: bool = False) -> Ending | None:
    """The ending a Ray error says the worker (not the job's code) met; None for any other
    error. `oom_kills_rose`: the kernel killed a process for memory while the job ran here."""
    if isinstance(exc, ray.exceptions.OutOfMemoryError):
        return _memory_monitor(str(exc))
    if isinstance(exc, ray.exceptions.WorkerCrashedError):
        if oom_kills_rose:
            return Ending(OOM_KILLED, "the kernel's OOM killer ended a process on this host "
                                      "while the job ran, and its worker died")
        return Ending(WORKER_LOST, _first_line(str(exc)))
    if isinstance(exc, ray.exceptions.NodeDiedError | ray.exceptions.LocalRayletDiedError):
        return Ending(NODE_LOST, _first_line(str(exc)))
    if isinstance(exc, ray.exceptions.RaySystemError):
        return Ending(RAY_SYSTEM, _first_line(str(exc)))
    return None


def _memory_monitor(message: str) -> Ending:
    node, task = _NODE_USED.search(message), _TASK_USED.findall(message)
    detail = _first_line(message)
    if node is None or not task:  # its share unknown: taken as its own
        return Ending(MEMORY_MONITOR, detail)
    node_used, used = float(node.group(1)), max(float(gb) for gb in task)
    detail = f"{detail}; the killed task used {used:g} GB"
    return Ending(MEMORY_MONITOR, detail, counted=node_used <= 0 or used / node_used >= OWN_SHARE)


def _first_line(message: str) -> str:
    return (message.strip().splitlines() or [""])[0]


def next_step(record: JobRecord, ending: Ending, error: str
              ) -> tuple[Status, dict[str, Any], dict[str, Any]]:
    """What becomes of a job whose attempt (`record.attempts`, counted by its claim) ended
    so: its new status, the attempt's log entry and the fields set with it."""
    entry = ending.entry(record.attempts)
    log = [*record.attempt_log, entry]
    uncounted = sum(not e.get("counted", True) for e in log)
    counted = record.attempts - uncounted
    own_memory = [e for e in log if e.get("cause") in MEMORY_CAUSES and e.get("counted", True)]
    if ending.counted and ending.cause in MEMORY_CAUSES and len(own_memory) >= 2:
        return Status.FAILED, entry, {"error": (
            f"the worker ran out of memory ({_memory_words(ending)}: {ending.detail}) on "
            f"{len(own_memory)} attempts; lower training.batch_size or the model's size, or "
            "run it on a node with more memory (a larger resources.cpus leaves room for fewer "
            "jobs beside it)")}
    if not ending.counted and uncounted > UNCOUNTED_MAX:
        return Status.FAILED, entry, {"error": (
            f"{error}: retried {UNCOUNTED_MAX} times for the service's or the cluster's own "
            "trouble without an end; see the attempt log, fix the service or node, and "
            "resubmit")}
    if not ending.counted or counted < record.max_attempts:
        return Status.QUEUED, entry, {"error": error}
    return Status.FAILED, entry, {"error": f"{error} (after {counted} counted attempts)"}


def _memory_words(ending: Ending) -> str:
    return ("killed by Ray's memory monitor" if ending.cause == MEMORY_MONITOR
            else "killed by the kernel's OOM killer")


def kernel_oom_kills() -> int | None:
    """The kernel's count of processes it killed for memory (the host's, and this cgroup's
    where it keeps one); None where neither can be read."""
    total, found = 0, False
    for path in _OOM_COUNTERS:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill" and value.strip().isdigit():
                total, found = total + int(value), True
    return total if found else None
