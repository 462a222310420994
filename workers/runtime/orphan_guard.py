"""Stops a Ray worker whose raylet died, before it finishes a job someone else now runs.

Ray ends a worker whose raylet died only when the worker is re-parented to PID 1. Under a
subreaper (CI harnesses, `tini`, `systemd --user`) it is re-parented there instead and trains
on, unseen: its service restarted and re-queued the job, and the orphan would finish the MLflow
run and delete the checkpoint that the re-run resumes from. The raylet's pid is in the
worker's environment, so one `getppid()` per step (a system call, negligible beside a step) tells.
"""

from __future__ import annotations

import os

from workers.run import RunAbandoned
from workers.training.callback_base import Callback, TrainerView


class Orphaned(RunAbandoned):
    """The worker's raylet is gone: nobody collects this run's result."""


def raylet_gone(raylet_pid: str | None = None) -> bool:
    """Whether this process's parent is no longer the raylet that started it (the pid from
    RAY_RAYLET_PID unless given); always False outside a Ray worker."""
    pid = os.environ.get("RAY_RAYLET_PID", "") if raylet_pid is None else raylet_pid
    return pid != "" and os.getppid() != int(pid)


class StopWhenOrphaned(Callback):
    """Raises `Orphaned` at the first step, epoch end or training end after the raylet died.
    Outside a Ray worker (no RAY_RAYLET_PID) it never fires."""

    def __init__(self) -> None:
        self.raylet_pid = os.environ.get("RAY_RAYLET_PID", "")

    def check(self) -> None:
        if raylet_gone(self.raylet_pid):
            raise Orphaned(f"the raylet (pid {self.raylet_pid}) that started this worker is "
                           "gone; the job is re-run by the service that re-queued it")

    def on_step_end(self, trainer: TrainerView) -> None:
        self.check()

    def on_epoch_end(self, trainer: TrainerView, metrics: dict[str, float]) -> None:
        self.check()

    def on_train_end(self, trainer: TrainerView) -> None:
        self.check()
