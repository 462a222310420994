"""The actor that carries progress back from the tasks to the dispatcher, and a task's link to it.

Workers never touch the job store: a worker on another node may not reach it (SQLite is a
local file). They report to the `ProgressBoard` actor, and the dispatcher writes the store.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

import ray

from workers.worker_settings import NAMESPACE

if TYPE_CHECKING:
    from ray.actor import ActorClass

PROGRESS_BOARD = "layerwise-progress"


@ray.remote(num_cpus=0)
class ProgressBoard:
    """Collects job updates and sweep trial rows until the dispatcher drains them, and carries
    stop requests to sweep drivers."""

    def __init__(self) -> None:
        self._updates: dict[str, list[dict[str, Any]]] = {}
        self._trials: dict[str, dict[str, dict[str, Any]]] = {}
        self._stop: set[str] = set()
        self._best: dict[str, float] = {}  # a sweep's best trial metric so far

    def report(self, job_id: str, update: dict[str, Any]) -> None:
        self._updates.setdefault(job_id, []).append(update)

    def report_trial(self, sweep_id: str, trial_id: str, update: dict[str, Any]) -> None:
        """Merge a partial row of one trial (later fields win; metrics merge)."""
        row = self._trials.setdefault(sweep_id, {}).setdefault(trial_id, {})
        if "metrics" in update and "metrics" in row:
            update = {**update, "metrics": {**row["metrics"], **update["metrics"]}}
        row.update(update)

    def drain(self) -> dict[str, list[dict[str, Any]]]:
        updates, self._updates = self._updates, {}
        return updates

    def drain_all(self) -> tuple[dict[str, list[dict[str, Any]]],
                                 dict[str, dict[str, dict[str, Any]]]]:
        """Job updates and trial rows at once (one round trip per dispatcher tick)."""
        trials, self._trials = self._trials, {}
        return self.drain(), trials

    def claim_best(self, sweep_id: str, value: float, mode: str) -> bool:
        """Whether `value` is at least as good as every trial's of the sweep so far (it then
        becomes the best): a trial that ends asks it, to decide whether to log its model."""
        best = self._best.get(sweep_id)
        if best is None or (value <= best if mode == "min" else value >= best):
            self._best[sweep_id] = value
            return True
        return False

    def request_stop(self, sweep_id: str) -> None:
        self._stop.add(sweep_id)

    def stop_requested(self, sweep_id: str) -> bool:
        return sweep_id in self._stop

    def forget_sweep(self, sweep_id: str) -> None:
        """Drop what is kept for a sweep nobody follows any more."""
        self._stop.discard(sweep_id)
        self._best.pop(sweep_id, None)
        self._trials.pop(sweep_id, None)
        self._updates.pop(sweep_id, None)


def progress_board() -> Any:
    """The board, created on first use. Detached: a non-detached named actor dies with the
    handles of whoever created it, even while another dispatcher (one started later in the
    same process, or after a restart on a shared cluster) still uses it.

    Restarted by Ray whenever its process dies (Ray's memory monitor killed it once, and
    every tick failed from then on): a restarted actor keeps its id, so the handles running
    tasks were given stay good, and calls made meanwhile are retried once it is back. What it
    held and nobody had drained is lost; the next reports carry on. Only a board killed for
    good (`ray.kill`) is replaced by a new one of the same name (the dispatcher does that);
    experiments' tasks then find it by name (`BoardLink`). Sweeps' drivers and trials keep
    the handle they were given, and their reports to it are lost; every task's outcome still
    reaches the dispatcher, as its return value."""
    # @ray.remote made the class an ActorClass; mypy does not apply class decorators.
    board = cast("ActorClass[ProgressBoard]", ProgressBoard)
    return board.options(name=PROGRESS_BOARD, namespace=NAMESPACE, get_if_exists=True,
                         lifetime="detached", max_restarts=-1, max_task_retries=-1).remote()


REPORT_STUCK_S = 2.0  # a board answers a report in milliseconds


class BoardLink:
    """A task's reports of one job to the board. They go to the handle the task was given;
    once one did not arrive (that board was killed for good, and the dispatcher made a new one
    of the same name), the board is looked up by name and what was lost is sent again. An
    update's fields overwrite the job's, so the lost updates merged are as good as delivered:
    the MLflow run id, reported once at the start, is not lost with the old board."""

    def __init__(self, board: Any, job_id: str):
        self.board, self.job_id = board, job_id
        self._sent: list[tuple[Any, dict[str, Any]]] = []  # not yet known to have arrived
        self._lost: dict[str, Any] = {}
        self._oldest_unsettled: float | None = None

    def flush(self) -> None:
        """At the task's end: wait a moment for the last reports, and send them to the new
        board if the old one is gone, so they are on a board before the task returns."""
        if self._sent:
            ray.wait([ref for ref, _ in self._sent], num_returns=len(self._sent),
                     timeout=REPORT_STUCK_S)
            self._oldest_unsettled = time.monotonic() - REPORT_STUCK_S  # all waited that long
        self({})
        if self._sent:
            ray.wait([ref for ref, _ in self._sent], num_returns=len(self._sent),
                     timeout=REPORT_STUCK_S)

    def __call__(self, update: dict[str, Any]) -> None:
        self._settle()
        if self._stuck():
            # Calls to a board killed for good are retried without end (max_task_retries=-1)
            # and never fail: reports pending this long count as lost when a new board exists.
            for _, pending in self._sent:
                self._lost.update(pending)
            self._sent, self._oldest_unsettled = [], None
        if self._lost:
            if not self._relink():  # no board yet: keep it for the next report
                self._lost.update(update)
                return
            update, self._lost = {**self._lost, **update}, {}
        if update:
            self._sent.append((self.board.report.remote(self.job_id, update), update))

    def _settle(self) -> None:
        """Drop the reports that arrived; keep the fields of those that did not."""
        if not self._sent:
            return
        refs = [ref for ref, _ in self._sent]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        done = {ref.hex() for ref in ready}
        for ref, update in self._sent:
            if ref.hex() not in done:
                continue
            try:
                ray.get(ref)
            except ray.exceptions.RayActorError:
                self._lost.update(update)
        self._sent = [(ref, update) for ref, update in self._sent if ref.hex() not in done]
        if not self._sent:
            self._oldest_unsettled = None
        elif self._oldest_unsettled is None:
            self._oldest_unsettled = time.monotonic()

    def _stuck(self) -> bool:
        """Reports have waited over REPORT_STUCK_S and the board's name now names another."""
        if (self._oldest_unsettled is None
                or time.monotonic() - self._oldest_unsettled < REPORT_STUCK_S):
            return False
        try:
            board = ray.get_actor(PROGRESS_BOARD, namespace=NAMESPACE)
        except ValueError:
            return False
        return bool(board._actor_id != self.board._actor_id)

    def _relink(self) -> bool:
        try:
            board = ray.get_actor(PROGRESS_BOARD, namespace=NAMESPACE)
        except ValueError:  # the dispatcher has not made the new one yet
            return False
        if board._actor_id == self.board._actor_id:
            return False
        self.board = board
        return True
