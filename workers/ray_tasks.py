"""The Ray side: the task that runs an experiment and the actor that carries progress back.

Workers never touch the job store: a worker on another node may not reach it (SQLite is a
local file). They report to the `ProgressBoard` actor, and the dispatcher writes the store.
"""

from __future__ import annotations

from typing import Any

import ray

from workers.run import WorkerSettings, run_experiment

PROGRESS_BOARD = "layerwise-progress"
NAMESPACE = "layerwise"


@ray.remote(num_cpus=0)
class ProgressBoard:
    """Collects {job_id: [update, ...]} from workers until the dispatcher drains it."""

    def __init__(self) -> None:
        self._updates: dict[str, list[dict[str, Any]]] = {}

    def report(self, job_id: str, update: dict[str, Any]) -> None:
        self._updates.setdefault(job_id, []).append(update)

    def drain(self) -> dict[str, list[dict[str, Any]]]:
        updates, self._updates = self._updates, {}
        return updates


def progress_board() -> Any:
    # Detached: a non-detached named actor dies when the dispatcher that created it drops its
    # handle, and a dispatcher started right after (a restarted service, a second test server)
    # could get that dying actor from get_if_exists and fail every tick.
    return ProgressBoard.options(name=PROGRESS_BOARD, namespace=NAMESPACE,
                                 get_if_exists=True, lifetime="detached").remote()


@ray.remote(max_retries=0)
def experiment_task(job_id: str, spec: dict[str, Any], settings: dict[str, Any],
                    board: Any, resume_run_id: str | None = None) -> dict[str, Any]:
    def report(update: dict[str, Any]) -> None:
        board.report.remote(job_id, update)

    result = run_experiment(job_id, spec, WorkerSettings(**settings), report,
                            resume_run_id=resume_run_id)
    result["node_id"] = ray.get_runtime_context().get_node_id()  # where it ran
    return result
