"""The Ray tasks the dispatcher launches: one runs an experiment (on one worker, or data-parallel
over several), one drives a sweep. What they report travels through the progress board
(`workers.runtime.progress_board`).
"""

from __future__ import annotations

from typing import Any

import ray

from workers.run import WorkerSettings
from workers.runtime.ray_train import run_data_parallel
from workers.runtime.worker_run import run_on_worker
from workers.sweeps.driver import run_sweep


@ray.remote(max_retries=0)
def experiment_task(job_id: str, spec: dict[str, Any], settings: dict[str, Any],
                    board: Any, resume_run_id: str | None = None,
                    service_tags: dict[str, str] | None = None) -> dict[str, Any]:
    """`service_tags`: the run's tags from the job's columns (a repair's link)."""
    if spec.get("resources", {}).get("workers", 1) > 1:
        return run_data_parallel(job_id, spec, WorkerSettings(**settings), board, resume_run_id,
                                 service_tags)
    return run_on_worker(job_id, spec, WorkerSettings(**settings), board, resume_run_id,
                         service_tags=service_tags)


@ray.remote(num_cpus=0, max_retries=0)
def sweep_task(sweep_id: str, sweep: dict[str, Any], settings: dict[str, Any], board: Any,
               parent_run_id: str | None = None) -> dict[str, Any]:
    """Drive a sweep with Ray Tune from inside the cluster. Holds no CPU: its trials do."""
    return run_sweep(sweep_id, sweep, WorkerSettings(**settings), board,
                     parent_run_id=parent_run_id)
