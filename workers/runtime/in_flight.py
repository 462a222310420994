"""The jobs a dispatcher runs on Ray, followed to their end: its in-flight table, the progress
their tasks report (drained from the progress board into the store), the outcomes their tasks
return, and the store moves those make.

`InFlightJobs` is the dispatcher's base: launching (`launching.py`), cancelling and recovery
(`cancelling.py`) and the thread that ticks (`dispatcher.py`) build on it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import ray

from services.lifecycle import TERMINAL, IllegalTransition, Status
from services.observability import JOBS_FINISHED, JOBS_RETRIED
from services.records import JobRecord
from services.settings import Settings
from services.store import AHEAD_COUNTED, JobNotFound, JobStore
from workers.runtime import sweep_jobs
from workers.runtime.attempts import Ending, kernel_oom_kills, next_step, ray_ending
from workers.runtime.progress_board import PROGRESS_BOARD, progress_board
from workers.runtime.sweep_jobs import requested
from workers.worker_settings import WorkerSettings

log = logging.getLogger("layerwise.dispatcher")

# A call to the progress board that takes longer is given up (and the board replaced): a hung
# or restarting board must not hold up the tick, which also launches jobs and records outcomes.
BOARD_TIMEOUT_S = 5.0
# What Ray says of the cluster's resources is read again after this long: each read asks Ray's
# control store of every node (2 ms with 32 nodes), and the dispatcher ticks on every task's end.
# A node that joined or was lost shows within it.
CLUSTER_VIEW_S = 1.0


@dataclass
class InFlight:
    record: JobRecord
    ref: Any
    cpus: float
    gpus: float
    launched: float = field(default_factory=time.monotonic)
    stop_requested: float | None = None  # a sweep asked to stop (monotonic time)
    oom_kills: int | None = None  # the kernel's OOM-kill count at launch, when Ray is local


class InFlightJobs:
    """The state every part of the dispatcher shares, and what it does with a job that runs."""

    def __init__(self, store: JobStore, settings: Settings):
        self.store, self.settings = store, settings
        self.in_flight: dict[str, InFlight] = {}  # written by the dispatcher thread only
        self.paused = False
        self._held = (0.0, 0.0)  # CPUs and GPUs in_flight holds, published for other threads
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._board: Any = None
        self._last_progress = 0.0
        self._board_checked = 0.0  # when the board last answered (or was replaced)
        self._cluster_views: dict[str, tuple[float, dict[str, float]]] = {}
        # Told of every experiment that succeeded or failed, on the dispatcher thread (it must
        # return at once). The composition root sets it: `diagnostics.auto_repair` submits a
        # repair (of a run that diverged too) through workers.submission, which this package
        # does not import.
        self.on_finished: Callable[[JobRecord], None] | None = None
        self._worker_settings = asdict(WorkerSettings(
            tracking_uri=settings.tracking_uri, home=str(settings.home_dir),
            data_roots=settings.data_root_list, checkpoint_every_s=settings.checkpoint_every_s,
            tune_storage=settings.tune_storage, metrics_uri=settings.mlflow_backend_uri,
            max_data_bytes=settings.max_data_bytes))

    def wake(self) -> None:
        """Tick now instead of at the next interval: a job was queued or a task ended. Each
        of those waited half an interval on average, twice per job."""
        self._wake.set()

    # -- the cluster -------------------------------------------------------------------
    def capacity(self) -> dict[str, float]:
        """The cluster's total CPUs and GPUs (as of at most CLUSTER_VIEW_S ago)."""
        return self._cluster_view("capacity", _read_capacity)

    def largest_node(self) -> dict[str, float]:
        """The most of each resource any one alive node has: one task runs on one node (as of
        at most CLUSTER_VIEW_S ago)."""
        return self._cluster_view("largest_node", _read_largest_node)

    def _cluster_view(self, name: str, read: Callable[[], dict[str, float]]
                      ) -> dict[str, float]:
        """`read()`, again only once CLUSTER_VIEW_S have passed since the last read. Each
        entry is replaced whole, so request threads read one consistent view."""
        stamp, view = self._cluster_views.get(name, (-math.inf, {}))
        if time.monotonic() - stamp > CLUSTER_VIEW_S:
            view = read()
            self._cluster_views[name] = (time.monotonic(), view)
        return dict(view)

    def waiting_reason(self, record: JobRecord) -> str:
        """Why a queued job has not started: its request against what is free, and the queue."""
        cpus, gpus = requested(record)
        capacity = self.capacity()
        held_cpus, held_gpus = self._held  # not in_flight, which the dispatcher thread changes
        free_cpus, free_gpus = capacity["cpus"] - held_cpus, capacity["gpus"] - held_gpus
        ahead = self.store.jobs_ahead(record.id, up_to=AHEAD_COUNTED)
        at_least = "at least " if ahead >= AHEAD_COUNTED else ""  # counted no further
        parts = [f"needs {cpus:g} CPU and {gpus:g} GPU; free now: {max(free_cpus, 0):g} of "
                 f"{capacity['cpus']:g} CPU, {max(free_gpus, 0):g} of {capacity['gpus']:g} GPU",
                 f"{at_least}{ahead} queued job(s) ahead of it"]
        if self.paused:
            parts.append("the dispatcher is paused")
        return "; ".join(parts)

    # -- the in-flight table: changed here only, on the dispatcher thread -----------------
    def _track(self, flight: InFlight) -> None:
        self.in_flight[flight.record.id] = flight
        self._publish_held()

    def _untrack(self, job_id: str) -> InFlight | None:
        flight = self.in_flight.pop(job_id, None)
        self._publish_held()
        return flight

    def _publish_held(self) -> None:
        flights = list(self.in_flight.values())
        self._held = (sum(f.cpus for f in flights), sum(f.gpus for f in flights))

    # -- progress --------------------------------------------------------------------------
    def _write_progress(self) -> None:
        if self._board is None:
            return
        self._last_progress = time.monotonic()
        try:
            jobs, trials = ray.get(self._board.drain_all.remote(), timeout=BOARD_TIMEOUT_S)
        except ray.exceptions.RayError as exc:  # died, killed for memory, hung: replace it
            self._replace_board(exc)
            return
        self._board_checked = time.monotonic()
        for job_id, updates in jobs.items():
            fields: dict[str, Any] = {}
            for update in updates:
                fields.update(update)
            with unknown_job_ignored(job_id):
                if fields:
                    self.store.update(job_id, **fields)
        for sweep_id, rows in trials.items():
            with unknown_job_ignored(sweep_id):
                sweep_jobs.merge_reports(self.store, sweep_id, rows)

    def _replace_board(self, exc: Exception) -> None:
        """Use the board of that name, a new one if it is gone for good (a board whose process
        died is restarted by Ray, the same actor: `progress_board`). Reports it had not handed
        over are lost; outcomes are not (they are the tasks' return values). Experiments' tasks
        launched before find a new board by name (`BoardLink`); sweeps' go on reporting to the
        old one, and those reports are lost."""
        log.warning("the progress board failed (%s: %s); going on with the one named %r",
                    type(exc).__name__, str(exc)[:300], PROGRESS_BOARD)
        self._board = progress_board()
        self._board_checked = time.monotonic()
        for job_id, flight in self.in_flight.items():  # stop requests lived on the board
            if flight.stop_requested is not None:
                self._board.request_stop.remote(job_id)

    # -- outcomes --------------------------------------------------------------------------
    def _collect_finished(self) -> None:
        if not self.in_flight:
            return
        refs = [f.ref for f in self.in_flight.values()]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        if not ready:
            return
        self._write_progress()  # the last epoch's report may still be on the board
        failed: Exception | None = None
        for job_id, flight in list(self.in_flight.items()):
            if flight.ref not in ready:
                continue
            # Recorded, then dropped: if the store fails meanwhile, the next tick retries it,
            # and the other jobs that ended are recorded all the same.
            try:
                self._record_outcome(flight)
            except Exception as exc:
                failed = failed or exc
                continue
            self._untrack(job_id)
            if flight.record.job_type == "sweep":
                self._board.forget_sweep.remote(job_id)
        if failed is not None:
            raise failed

    def _record_outcome(self, flight: InFlight) -> None:
        job_id = flight.record.id
        try:
            result = ray.get(flight.ref)
        except ray.exceptions.TaskCancelledError:
            return  # cancelled through the store; already final there
        except ray.exceptions.RayError as exc:  # the worker, the job's code, or Ray
            ending = ray_ending(exc, oom_kills_rose=_oom_kills_rose(flight))
            if ending is not None:  # the worker, not the job's code, failed: retried
                self._retry_or_fail(flight.record, ending, f"the Ray worker failed: {exc}")
                return
            cause = exc.cause if isinstance(exc, ray.exceptions.RayTaskError) and \
                exc.cause is not None else exc
            self._finish(job_id, Status.FAILED, error=f"{type(cause).__name__}: {cause}",
                         **_diagnosis_of_failure(cause))
            if flight.record.job_type == "sweep":
                sweep_jobs.close_runs(self.store.get(job_id), self.settings.tracking_uri,
                                      "FAILED")
            return
        if flight.record.job_type == "sweep":
            rows = {row["trial_id"]: row for row in result.pop("trials", [])}
            ended = sweep_jobs.outcome(sweep_jobs.merge_reports(self.store, job_id, rows,
                                                                **result))
            if ended is not None:
                self._finish(job_id, ended[0], error=ended[1])
            return
        self._finish(job_id, Status.SUCCEEDED, result=_result_metrics(result),
                     param_count=result.get("param_count"), diagnosis=result.get("diagnosis"))

    def _retry_or_fail(self, record: JobRecord, ending: Ending, error: str) -> None:
        """Re-queue or fail a job whose attempt ended early (`attempts.next_step`): the
        attempt's cause is logged on the record in the transaction that moves it."""
        try:
            moved = self.store.end_attempt(
                record.id, lambda current: next_step(current, ending, error))
        except IllegalTransition as exc:  # e.g. cancelled while the task was finishing
            log.info("%s", exc, extra={"job_id": record.id})
            return
        log.warning("attempt %d ended early: %s (%s); the job is %s", moved.attempts,
                    ending.cause, "counted" if ending.counted else "not counted",
                    moved.status, extra={"job_id": record.id})
        if moved.status == Status.QUEUED:
            JOBS_RETRIED.labels(job_type=record.job_type).inc()
        self._moved(moved)

    def _finish(self, job_id: str, target: Status, **fields: Any) -> None:
        try:
            record = self.store.move(job_id, target, **fields)
        except IllegalTransition as exc:  # e.g. cancelled while the task was finishing
            log.info("%s", exc, extra={"job_id": job_id})
            return
        self._moved(record)

    def _moved(self, record: JobRecord) -> None:
        """What follows a job's move: the counters, and the follow-up of an ended experiment."""
        target = Status(record.status)
        if target in TERMINAL:
            JOBS_FINISHED.labels(job_type=record.job_type, status=target.value).inc()
        if target in (Status.SUCCEEDED, Status.FAILED) and record.job_type == "experiment" \
                and self.on_finished is not None:
            try:
                self.on_finished(record)
            except Exception:  # the job is recorded; its follow-up must not fail the tick
                log.exception("after job %s ended", record.id, extra={"job_id": record.id})


def _oom_kills_rose(flight: InFlight) -> bool:
    if flight.oom_kills is None:
        return False
    current = kernel_oom_kills()
    return current is not None and current > flight.oom_kills


def _read_capacity() -> dict[str, float]:
    total = ray.cluster_resources()
    return {"cpus": float(total.get("CPU", 0.0)), "gpus": float(total.get("GPU", 0.0))}


def _read_largest_node() -> dict[str, float]:
    largest: dict[str, float] = {}
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        for name, amount in node.get("Resources", {}).items():
            largest[name] = max(largest.get(name, 0.0), float(amount))
    return largest


@contextmanager
def unknown_job_ignored(job_id: str) -> Iterator[None]:
    """Reports for a job this store does not hold are dropped, not allowed to stop the others:
    the board outlives a service, and one cluster may serve several."""
    try:
        yield
    except JobNotFound:
        log.debug("progress for job %s, which this store does not hold", job_id)


def _result_metrics(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k not in ("param_count", "diagnosis")}


def _diagnosis_of_failure(cause: BaseException) -> dict[str, Any]:
    """{"diagnosis": ...} for a run that failed with its diagnosis (one that diverged: the
    `Diverged` error carries it, `workers.run`), so that its record has it and it can be
    repaired; {} for any other failure."""
    diagnosis = getattr(cause, "diagnosis", None)
    return {"diagnosis": diagnosis} if isinstance(diagnosis, dict) and diagnosis else {}
