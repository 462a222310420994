"""One experiment as a Ray worker runs it: progress to the board, stopped if orphaned."""

from __future__ import annotations

import logging
from typing import Any

import ray

from workers.run import Report, RunHooks, RunOptions, WorkerSettings, run_experiment
from workers.runtime.job_log import capturing
from workers.runtime.orphan_guard import StopWhenOrphaned
from workers.runtime.progress_board import BoardLink
from workers.tracking.run_tracker import RunTracker
from workers.training.data_parallel import DataParallel

EPOCHS = logging.getLogger("layerwise.worker")  # a line per epoch in the job's log
EPOCHS.setLevel(logging.INFO)


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
    node_id = ray.get_runtime_context().get_node_id()
    with capturing(settings.home, job_id, node=node_id):  # its log, for `layerwise logs`
        result = run_experiment(job_id, spec, settings, _logging_epochs(report), RunOptions(
            tags=dict(service_tags or {}), run_id=resume_run_id, parallel=parallel,
            hooks=OrphanGuard()))
        report.flush()
    result["node_id"] = node_id
    return result


def _logging_epochs(report: Report) -> Report:
    """`report`, and a line in the job's log for each epoch's progress (once: an epoch's
    progress may be reported again, with its live diagnosis)."""
    logged = {"epoch": 0}

    def both(update: dict[str, Any]) -> None:
        progress = update.get("progress")
        if isinstance(progress, dict) and progress.get("epoch", 0) > logged["epoch"]:
            logged["epoch"] = progress["epoch"]
            metrics = progress.get("metrics") or {}
            shown = " ".join(f"{key} {value:.4g}" for key, value in sorted(metrics.items())
                             if isinstance(value, float) and "/" in key and
                             key.split("/")[0] in ("train", "val"))
            verdict = (progress.get("diagnosis") or {}).get("verdict")
            EPOCHS.info("epoch %s/%s %s%s", progress["epoch"], progress.get("epochs") or "?",
                        shown, f" (diagnosis {verdict})" if verdict else "")
        report(update)
    return both
