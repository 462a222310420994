"""One experiment as a Ray worker runs it: progress to the board, stopped if orphaned."""

from __future__ import annotations

from typing import Any

import ray

from workers.run import RunHooks, RunOptions, WorkerSettings, run_experiment
from workers.runtime.orphan_guard import StopWhenOrphaned
from workers.runtime.progress_board import BoardLink
from workers.tracking.run_tracker import RunTracker
from workers.training.data_parallel import DataParallel


class OrphanGuard(StopWhenOrphaned, RunHooks):
    """The orphan guard as the run's hooks: it checks at every step, epoch end and training
    end, and once more after training's last reports. It comes before the checkpoint
    callback, so an orphan neither overwrites the checkpoint nor deletes it."""

    def before_finish(self, tracker: RunTracker) -> None:
        self.check()


def run_on_worker(job_id: str, spec: dict[str, Any], settings: WorkerSettings, board: Any,
                  resume_run_id: str | None, parallel: DataParallel | None = None,
                  service_tags: dict[str, str] | None = None) -> dict[str, Any]:
    """`run_experiment` as a Ray worker runs it (alone, or as rank 0 of a data-parallel
    training): progress to the board, stopped if orphaned, and the node it ran on.
    `service_tags` go on the run besides the spec's (a repair's link, from the job's columns)."""
    report = BoardLink(board, job_id)
    result = run_experiment(job_id, spec, settings, report, RunOptions(
        tags=dict(service_tags or {}), run_id=resume_run_id, parallel=parallel,
        hooks=OrphanGuard()))
    report.flush()
    result["node_id"] = ray.get_runtime_context().get_node_id()
    return result
