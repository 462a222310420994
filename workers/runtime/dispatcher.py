"""The dispatcher: moves queued jobs onto Ray and keeps the store in step with what runs.

Each tick (every 50 ms, or at once when woken) it records finished tasks, stops the tasks of
cancelled jobs, and launches the best queued jobs that fit in the cluster's free CPUs and GPUs;
the progress that workers reported is written every quarter second. It runs as a thread beside
the API, or alone (`layerwise dispatcher`).

The dispatcher thread is the only writer of `in_flight`: a request to cancel a running job
is handed over (`request_cancel`) and acted on in the next tick. What request threads read
(`waiting_reason`, `health`) comes from snapshots the thread publishes whole.

It outlives what a bad job does to Ray: a progress board that died is replaced, a job Ray
refuses to launch fails at once with Ray's reason, and ticks that keep failing make /readyz
say so (`health`).

A sweep is a job too: its driver is a Ray task that runs Ray Tune, and it reserves its trials'
resources here (one trial's CPUs and GPUs times the trials it may run at once).
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import ray
from mlflow.tracking import MlflowClient

from services.lifecycle import TERMINAL, IllegalTransition, Status, now
from services.observability import DISPATCH_LATENCY, JOBS_FINISHED, JOBS_RETRIED, JOBS_STARTED
from services.settings import Settings
from services.store import JobNotFound, JobRecord, JobStore
from workers.runtime import sweep_jobs
from workers.runtime.progress_board import PROGRESS_BOARD, progress_board
from workers.runtime.ray_tasks import experiment_task, sweep_task
from workers.runtime.sweep_jobs import requested, reserved  # noqa: F401  (requested lived here)
from workers.worker_settings import NAMESPACE, WorkerSettings

log = logging.getLogger("layerwise.dispatcher")

CANCEL_POLL_S = 0.5
# Reported progress is written to the store at most this often (and whenever a task ends):
# merging a sweep's trial table on every 50 ms tick was most of the service's CPU during a sweep
# of short trials. Without a wake-up (a submission here, a task that ended), the queue is
# checked as often: jobs queued by another process (`serve --no-dispatcher`) wait that long.
PROGRESS_EVERY_S = 0.25
QUEUE_POLL_S = 0.25
WARM_WORKERS_SPARE = 8  # idle worker processes a local Ray keeps beyond one per CPU
# A cancelled sweep's driver stops Tune (which frees the trials' placement groups) within a
# few seconds; only a driver that does not is killed.
SWEEP_STOP_GRACE_S = 30.0
JOB_TYPES = ("experiment", "sweep")
# How long a cancel request waits for the dispatcher thread to stop the job's Ray task, so
# that the answer to it comes after the task was stopped (a tick takes milliseconds).
CANCEL_WAIT_S = 10.0
# A call to the progress board that takes longer is given up (and the board replaced): a hung
# or restarting board must not hold up the tick, which also launches jobs and records outcomes.
BOARD_TIMEOUT_S = 5.0
# After a failed tick the next comes this much later and runs every step (a tick that only
# skipped the failing step would pass for a recovery).
FAILED_TICK_RETRY_S = 0.5
# /readyz says not ready once ticks have failed without a success for this long (a single
# failed tick, e.g. a dropped database connection, does not), or one tick runs this long.
UNREADY_AFTER_S = 10.0
STUCK_AFTER_S = 60.0
LOG_FAILURES_EVERY_S = 30.0  # a failing tick's traceback is logged once, then a line this often
# Ray errors that say the worker, not the job's code, failed: those are retried. Ray's memory
# monitor kills the newest task when a node runs short, not necessarily the one that used most.
_SYSTEM_ERRORS = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                  ray.exceptions.RaySystemError, ray.exceptions.OutOfMemoryError)


class LaunchRefused(Exception):
    """The job cannot run as asked (Ray refused its options, or no node has what it needs):
    it fails at once with this reason rather than being retried."""


def ensure_ray(settings: Settings) -> bool:
    """Join RAY_ADDRESS when set, else start a local Ray (about 2.5 s). Returns whether this
    call connected (False: this process was connected already)."""
    if ray.is_initialized():
        return False
    with _own_sigterm_kept():
        _init_ray(settings)
    return True


@contextmanager
def _own_sigterm_kept() -> Iterator[None]:
    """`ray.init` in the main thread replaces the SIGTERM handler with one that exits at once:
    the service's (uvicorn's graceful shutdown: stop accepting, finish requests, stop the
    dispatcher, which then ends the Ray it started)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if handler is not None:  # None: set outside Python, nothing to put back
            signal.signal(signal.SIGTERM, handler)


def _init_ray(settings: Settings) -> None:
    if settings.ray_address:
        ray.init(address=settings.ray_address, namespace=NAMESPACE, log_to_driver=False)
    else:
        ray.init(num_cpus=settings.ray_num_cpus, namespace=NAMESPACE, include_dashboard=False,
                 log_to_driver=False, _system_config=local_ray_config(settings.ray_num_cpus))


def local_ray_config(num_cpus: int | None) -> dict[str, Any]:
    """Ray's settings for a local Ray. Ray ends idle worker processes once a node has more
    workers than CPUs, and a node with sweeps running counts its actors too (the board, Tune's
    trial actors): the workers that had imported torch and opened the tracking store went
    within a second of a sweep's end, and the next sweep paid ~8 s to warm new ones. A cluster
    sets the same on its nodes with the environment variable RAY_num_workers_soft_limit."""
    return {"num_workers_soft_limit": (num_cpus or os.cpu_count() or 1) + WARM_WORKERS_SPARE}


@dataclass
class InFlight:
    record: JobRecord
    ref: Any
    cpus: float
    gpus: float
    launched: float = field(default_factory=time.monotonic)
    stop_requested: float | None = None  # a sweep asked to stop (monotonic time)


@dataclass(frozen=True)
class TickState:
    """What the dispatcher thread last published about its ticks. Replaced whole, so a
    request thread (/readyz) reads one consistent state."""
    started: float | None = None  # monotonic start of the tick running now; None between ticks
    failures: int = 0  # consecutive failed ticks
    failing_since: float | None = None  # monotonic time of the first of them
    error: str = ""  # the last failure


class Dispatcher:
    def __init__(self, store: JobStore, settings: Settings):
        self.store, self.settings = store, settings
        self.in_flight: dict[str, InFlight] = {}  # written by the dispatcher thread only
        self.paused = False
        self._held = (0.0, 0.0)  # CPUs and GPUs in_flight holds, published for other threads
        self._cancels: queue.SimpleQueue[tuple[str, threading.Event]] = queue.SimpleQueue()
        self._ticks = TickState()
        self._last_failure_log = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._board: Any = None
        self._connected_ray = False
        self._last_cancel_poll = 0.0
        self._last_heartbeat = 0.0
        self._last_progress = 0.0
        self._board_checked = 0.0  # when the board last answered (or was replaced)
        self._last_queue_poll = 0.0
        self._worker_settings = asdict(WorkerSettings(
            tracking_uri=settings.tracking_uri, home=str(settings.home_dir),
            data_roots=settings.data_root_list, checkpoint_every_s=settings.checkpoint_every_s,
            tune_storage=settings.tune_storage, metrics_uri=settings.mlflow_backend_uri,
            max_data_bytes=settings.max_data_bytes))

    # -- running -----------------------------------------------------------------------
    def start(self) -> None:
        self._connected_ray = ensure_ray(self.settings)
        self._board = progress_board()
        self._thread = threading.Thread(target=self._run, name="dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._connected_ray:  # the local Ray it started ends with it; a cluster stays
            ray.shutdown()

    def wake(self) -> None:
        """Tick now instead of at the next interval: a job was queued or a task ended. Each
        of those waited half an interval on average, twice per job."""
        self._wake.set()

    def _run(self) -> None:
        while True:
            failing = self._ticks.failures > 0
            woken = self._wake.wait(FAILED_TICK_RETRY_S if failing
                                    else self.settings.dispatch_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            self._ticks = replace(self._ticks, started=time.monotonic())
            try:
                self.tick(woken=woken, full=failing)
            except Exception as exc:  # the dispatcher must outlive any one bad tick
                self._tick_failed(exc)
            else:
                self._tick_succeeded()

    def tick(self, *, woken: bool = True, full: bool = False) -> None:
        """One round. `woken`: something happened here (a job queued, a task ended), so the
        queue is checked now rather than at its next poll. `full`: every step runs now."""
        now_s = time.monotonic()
        self._take_cancel_requests()
        if full or now_s - self._last_progress >= PROGRESS_EVERY_S:
            self._write_progress()
        self._collect_finished()
        self._stop_cancelled(full=full)
        self._heartbeat_and_recover(full=full)
        if not self.paused and (woken or full or now_s - self._last_queue_poll >= QUEUE_POLL_S):
            self._last_queue_poll = now_s
            self._launch_what_fits(now_s)

    # -- health --------------------------------------------------------------------------
    def _tick_failed(self, exc: Exception) -> None:
        ticks, now_s = self._ticks, time.monotonic()
        first_line = (str(exc).splitlines() or [""])[0]  # not the SQL a database error quotes
        error = f"{type(exc).__name__}: {first_line}"[:300]
        self._ticks = TickState(failures=ticks.failures + 1, error=error,
                                failing_since=ticks.failing_since or now_s)
        if ticks.failures == 0:
            log.exception("dispatcher tick failed")
            self._last_failure_log = now_s
        elif now_s - self._last_failure_log >= LOG_FAILURES_EVERY_S:
            log.error("dispatcher ticks still failing (%d in a row): %s", ticks.failures + 1,
                      error)
            self._last_failure_log = now_s

    def _tick_succeeded(self) -> None:
        if self._ticks.failures:
            log.warning("dispatcher ticks succeed again after %d failures",
                        self._ticks.failures)
        self._ticks = TickState()

    def health(self) -> str | None:
        """None while the dispatcher moves the queue; otherwise why it does not (for /readyz)."""
        if self._thread is None or not self._thread.is_alive():
            return "the dispatcher thread is not running"
        ticks, now_s = self._ticks, time.monotonic()
        if ticks.started is not None and now_s - ticks.started > STUCK_AFTER_S:
            return (f"its current tick has run for {now_s - ticks.started:.0f} s (waiting on "
                    "the job store or Ray)")
        if ticks.failing_since is not None and now_s - ticks.failing_since >= UNREADY_AFTER_S:
            return (f"its ticks failed ({ticks.failures} in a row) for "
                    f"{now_s - ticks.failing_since:.1f} s; the last: {ticks.error}")
        return None

    # -- recovery ------------------------------------------------------------------------
    def _heartbeat_and_recover(self, *, full: bool = False) -> None:
        """Vouch for the jobs this dispatcher runs; re-queue running jobs nobody vouched for
        (their dispatcher died, and with it, as their Ray owner, their tasks)."""
        now_s = time.monotonic()
        if not full and now_s - self._last_heartbeat < self.settings.heartbeat_s:
            return
        self._last_heartbeat = now_s
        self.store.touch(list(self.in_flight))
        for orphan in self.store.orphans(self.settings.orphan_after_s,
                                         exclude=set(self.in_flight)):
            log.warning("re-queueing an orphaned job", extra={"job_id": orphan.id})
            self._retry_or_fail(orphan, "its dispatcher stopped while it ran (service restart "
                                        "or crash)")

    def capacity(self) -> dict[str, float]:
        """The cluster's total CPUs and GPUs."""
        total = ray.cluster_resources()
        return {"cpus": float(total.get("CPU", 0.0)), "gpus": float(total.get("GPU", 0.0))}

    def largest_node(self) -> dict[str, float]:
        """The most of each resource any one alive node has: one task runs on one node."""
        largest: dict[str, float] = {}
        for node in ray.nodes():
            if not node.get("Alive"):
                continue
            for name, amount in node.get("Resources", {}).items():
                largest[name] = max(largest.get(name, 0.0), float(amount))
        return largest

    def waiting_reason(self, record: JobRecord) -> str:
        """Why a queued job has not started: its request against what is free, and the queue."""
        cpus, gpus = requested(record)
        capacity = self.capacity()
        held_cpus, held_gpus = self._held  # not in_flight, which the dispatcher thread changes
        free_cpus, free_gpus = capacity["cpus"] - held_cpus, capacity["gpus"] - held_gpus
        ahead = self.store.jobs_ahead(record.id)
        parts = [f"needs {cpus:g} CPU and {gpus:g} GPU; free now: {max(free_cpus, 0):g} of "
                 f"{capacity['cpus']:g} CPU, {max(free_gpus, 0):g} of {capacity['gpus']:g} GPU",
                 f"{ahead} queued job(s) ahead of it"]
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

    # -- launching ---------------------------------------------------------------------
    def _launch_what_fits(self, tick_started: float) -> None:
        if self._board_checked < tick_started:  # a task given a dead board's handle would
            self._write_progress()  # report to nobody: this replaces a dead board first
        capacity = self.capacity()
        free_cpus, free_gpus = capacity["cpus"] - self._held[0], capacity["gpus"] - self._held[1]
        while True:
            def fits(record: JobRecord, cpus_free: float = free_cpus,
                     gpus_free: float = free_gpus) -> bool:
                cpus, gpus = reserved(record, capacity)
                return cpus <= cpus_free + 1e-9 and gpus <= gpus_free + 1e-9

            record = self.store.claim_next(fits=fits, job_types=JOB_TYPES)
            if record is None:
                return
            cpus, gpus = reserved(record, capacity)
            # claim_next made it running: from here on, whatever happens is recorded on it
            # (a job left running but not in flight would be re-queued as an orphan).
            try:
                self._launch(record, cpus, gpus)
            except LaunchRefused as exc:
                log.warning("job not launched: %s", exc, extra={"job_id": record.id})
                self._finish(record.id, Status.FAILED, error=f"not launched: {exc}")
                continue
            except Exception as exc:  # Ray itself failed: retried, and the tick fails
                self._retry_or_fail(record, f"could not launch it on Ray: "
                                            f"{type(exc).__name__}: {exc}")
                raise
            free_cpus, free_gpus = free_cpus - cpus, free_gpus - gpus

    def _launch(self, record: JobRecord, cpus: float, gpus: float) -> None:
        if record.job_type == "sweep":
            # The driver holds no CPU; Tune places the trials. A relaunched sweep continues
            # its MLflow parent run and resumes from Tune's saved state.
            ref = sweep_task.remote(record.id, record.spec, self._worker_settings, self._board,
                                    record.mlflow_run_id)
        else:
            ref = self._experiment_task(record, cpus, gpus).remote(
                record.id, record.spec, self._worker_settings, self._board,
                record.mlflow_run_id if record.attempts > 1 else None)
        self._track(InFlight(record, ref, cpus, gpus))
        ref.future().add_done_callback(lambda _: self.wake())
        JOBS_STARTED.labels(job_type=record.job_type).inc()
        DISPATCH_LATENCY.observe(max(0.0, (now() - record.created_at).total_seconds()))
        log.info("launched job", extra={"job_id": record.id, "job_type": record.job_type,
                                        "attempt": record.attempts})

    def _experiment_task(self, record: JobRecord, cpus: float, gpus: float) -> Any:
        """The task with the resources it holds; LaunchRefused if it could never start: Ray
        would otherwise keep an infeasible task pending, the job `running`, forever."""
        resources = record.spec.get("resources", {})
        if resources.get("workers", 1) > 1:  # Ray Train's workers hold the resources
            return experiment_task.options(num_cpus=0, num_gpus=0)
        custom = resources.get("custom") or {}
        try:
            task = experiment_task.options(num_cpus=cpus, num_gpus=gpus, resources=custom)
        except (ValueError, TypeError) as exc:
            raise LaunchRefused(f"Ray refused resources.custom {custom}: {exc}; fix "
                                "resources.custom and resubmit") from exc
        largest = self.largest_node()
        short = [f"{amount:g} {name} (the largest node has {largest.get(name, 0.0):g})"
                 for name, amount in {"CPU": cpus, "GPU": gpus, **custom}.items()
                 if amount > largest.get(name, 0.0) + 1e-9]
        if short:
            raise LaunchRefused(f"no node in the cluster has what it needs now: "
                                f"{', '.join(short)}; resubmit once such a node has joined")
        return task

    # -- following -----------------------------------------------------------------------
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
            with _unknown_job_ignored(job_id):
                if fields:
                    self.store.update(job_id, **fields)
        for sweep_id, rows in trials.items():
            with _unknown_job_ignored(sweep_id):
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
        except _SYSTEM_ERRORS as exc:
            self._retry_or_fail(flight.record, f"the Ray worker failed: {exc}")
            return
        except ray.exceptions.RayError as exc:  # the job's code, or Ray could not run it
            cause = exc.cause if isinstance(exc, ray.exceptions.RayTaskError) and \
                exc.cause is not None else exc
            self._finish(job_id, Status.FAILED, error=f"{type(cause).__name__}: {cause}")
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

    def _retry_or_fail(self, record: JobRecord, error: str) -> None:
        current = self.store.get(record.id)
        if current.attempts < current.max_attempts:
            JOBS_RETRIED.labels(job_type=record.job_type).inc()
            self._finish(record.id, Status.QUEUED, error=error)
        else:
            self._finish(record.id, Status.FAILED,
                         error=f"{error} (after {current.attempts} attempts)")

    def _finish(self, job_id: str, target: Status, **fields: Any) -> None:
        try:
            record = self.store.move(job_id, target, **fields)
        except IllegalTransition as exc:  # e.g. cancelled while the task was finishing
            log.info("%s", exc, extra={"job_id": job_id})
            return
        if target in TERMINAL:
            JOBS_FINISHED.labels(job_type=record.job_type, status=target.value).inc()

    # -- cancelling ----------------------------------------------------------------------
    def request_cancel(self, job_id: str, *, wait_s: float = CANCEL_WAIT_S) -> bool:
        """Have the dispatcher thread stop a job's Ray work; the caller has moved the job to
        cancelled in the store. Waits up to `wait_s` for it, so the answer to a cancel comes
        after the task was stopped. Returns whether it was done in that time (if not, the
        dispatcher's poll of cancelled jobs stops it later)."""
        done = threading.Event()
        self._cancels.put((job_id, done))
        self.wake()
        running = self._thread is not None and self._thread.is_alive()
        if not running or threading.current_thread() is self._thread:
            return False
        return done.wait(wait_s)

    def _take_cancel_requests(self) -> None:
        while True:
            try:
                job_id, done = self._cancels.get_nowait()
            except queue.Empty:
                return
            try:
                with _unknown_job_ignored(job_id):  # deleted meanwhile: nothing to stop
                    record = self.store.get(job_id)
                    if record.status == Status.CANCELLED:  # only what was cancelled is stopped
                        self._cancel_task(job_id, record.mlflow_run_id)
            finally:  # a request that failed is left to the poll; its caller need not wait
                done.set()

    def _stop_cancelled(self, *, full: bool = False) -> None:
        now = time.monotonic()
        if not self.in_flight or (not full and now - self._last_cancel_poll < CANCEL_POLL_S):
            return
        self._last_cancel_poll = now
        for job_id, flight in list(self.in_flight.items()):
            if flight.stop_requested is not None:
                if now - flight.stop_requested > SWEEP_STOP_GRACE_S:
                    log.warning("sweep %s did not stop within %.0f s; killing its driver (its "
                                "trials' placement groups stay reserved until Ray's job ends)",
                                job_id, SWEEP_STOP_GRACE_S)
                    self._kill(job_id, self.store.get(job_id).mlflow_run_id)
                continue
            record = self.store.get(job_id)
            if record.status == Status.CANCELLED:
                self._cancel_task(job_id, record.mlflow_run_id)

    def _cancel_task(self, job_id: str, mlflow_run_id: str | None) -> None:
        """Stop a running job's Ray work and close its MLflow run.

        An experiment's task is killed. A sweep is asked to stop: its driver ends Tune, which
        stops every trial and frees their resources, then closes the MLflow runs and returns
        the final table (killing the driver instead would leave its trials' placement groups
        reserved).
        """
        flight = self.in_flight.get(job_id)
        if flight is not None and flight.record.job_type == "sweep":
            if flight.stop_requested is None:
                flight.stop_requested = time.monotonic()
                self._board.request_stop.remote(job_id)
            return
        self._kill(job_id, mlflow_run_id)

    def _kill(self, job_id: str, mlflow_run_id: str | None) -> None:
        flight = self._untrack(job_id)
        if flight is not None:
            ray.cancel(flight.ref, force=True)
        if flight is not None and flight.record.job_type == "sweep":
            sweep_jobs.close_runs(self.store.get(job_id), self.settings.tracking_uri, "KILLED")
            self._board.forget_sweep.remote(job_id)
        elif mlflow_run_id:
            client = MlflowClient(tracking_uri=self.settings.tracking_uri)
            client.set_terminated(mlflow_run_id, status="KILLED")


@contextmanager
def _unknown_job_ignored(job_id: str) -> Iterator[None]:
    """Reports for a job this store does not hold are dropped, not allowed to stop the others:
    the board outlives a service, and one cluster may serve several."""
    try:
        yield
    except JobNotFound:
        log.debug("progress for job %s, which this store does not hold", job_id)


def _result_metrics(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k not in ("param_count", "diagnosis")}
