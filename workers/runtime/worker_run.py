"""One experiment as a Ray worker runs it: progress to the board, stopped if orphaned."""

from __future__ import annotations

from typing import Any

import ray

from workers.run import RunOptions, WorkerSettings, run_experiment
from workers.runtime.orphan_guard import StopWhenOrphaned
from workers.runtime.progress_board import BoardLink
from workers.training.data_parallel import DataParallel


def run_on_worker(job_id: str, spec: dict[str, Any], settings: WorkerSettings, board: Any,
                  resume_run_id: str | None, parallel: DataParallel | None = None
                  ) -> dict[str, Any]:
    """`run_experiment` as a Ray worker runs it (alone, or as rank 0 of a data-parallel
    training): progress to the board, stopped if orphaned, and the node it ran on."""
    report = BoardLink(board, job_id)
    # The guard comes before the checkpoint callback, and checks once more after training's
    # last reports: an orphan must neither overwrite the checkpoint nor delete it.
    guard = StopWhenOrphaned()
    result = run_experiment(job_id, spec, settings, report, RunOptions(
        run_id=resume_run_id, parallel=parallel, callbacks=lambda tracker: [guard],
        before_finish=guard.check))
    report.flush()
    result["node_id"] = ray.get_runtime_context().get_node_id()
    return result
