"""The dispatcher: moves queued jobs onto Ray and keeps the store in step with what runs.

Each tick (every 50 ms, or at once when woken) it records finished tasks, stops the tasks of
cancelled jobs, and launches the best queued jobs that fit in the cluster's free CPUs and GPUs;
the progress that workers reported is written every quarter second. It runs as a thread beside
the API, or alone (`layerwise dispatcher`).

A sweep is a job too: its driver is a Ray task that runs Ray Tune, and it reserves its trials'
resources here (one trial's CPUs and GPUs times the trials it may run at once).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import ray
from mlflow.tracking import MlflowClient

from services import sweep_jobs
from services.lifecycle import TERMINAL, IllegalTransition, Status, now
from services.observability import DISPATCH_LATENCY, JOBS_FINISHED, JOBS_RETRIED, JOBS_STARTED
from services.settings import Settings
from services.store import JobNotFound, JobRecord, JobStore
from services.sweep_jobs import requested, reserved  # noqa: F401  (requested lived here)
from workers.ray_tasks import experiment_task, progress_board, sweep_task
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
# Ray errors that say the worker, not the job's code, failed: those are retried.
_SYSTEM_ERRORS = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                  ray.exceptions.RaySystemError)


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


class Dispatcher:
    def __init__(self, store: JobStore, settings: Settings):
        self.store, self.settings = store, settings
        self.in_flight: dict[str, InFlight] = {}
        self.paused = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._board: Any = None
        self._connected_ray = False
        self._last_cancel_poll = 0.0
        self._last_heartbeat = 0.0
        self._last_progress = 0.0
        self._last_queue_poll = 0.0
        self._worker_settings = asdict(WorkerSettings(
            tracking_uri=settings.tracking_uri, home=str(settings.home_dir),
            data_roots=settings.data_root_list, checkpoint_every_s=settings.checkpoint_every_s,
            tune_storage=settings.tune_storage, metrics_uri=settings.mlflow_backend_uri))

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
            woken = self._wake.wait(self.settings.dispatch_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.tick(woken=woken)
            except Exception:  # the dispatcher must outlive any one bad tick
                log.exception("dispatcher tick failed")

    def tick(self, *, woken: bool = True) -> None:
        """One round. `woken`: something happened here (a job queued, a task ended), so the
        queue is checked now rather than at its next poll."""
        now_s = time.monotonic()
        if now_s - self._last_progress >= PROGRESS_EVERY_S:
            self._write_progress()
        self._collect_finished()
        self._stop_cancelled()
        self._heartbeat_and_recover()
        if not self.paused and (woken or now_s - self._last_queue_poll >= QUEUE_POLL_S):
            self._last_queue_poll = now_s
            self._launch_what_fits()

    # -- recovery ------------------------------------------------------------------------
    def _heartbeat_and_recover(self) -> None:
        """Vouch for the jobs this dispatcher runs; re-queue running jobs nobody vouched for
        (their dispatcher died, and with it, as their Ray owner, their tasks)."""
        now_s = time.monotonic()
        if now_s - self._last_heartbeat < self.settings.heartbeat_s:
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
        free_cpus = capacity["cpus"] - sum(f.cpus for f in self.in_flight.values())
        free_gpus = capacity["gpus"] - sum(f.gpus for f in self.in_flight.values())
        ahead = self.store.jobs_ahead(record.id)
        parts = [f"needs {cpus:g} CPU and {gpus:g} GPU; free now: {max(free_cpus, 0):g} of "
                 f"{capacity['cpus']:g} CPU, {max(free_gpus, 0):g} of {capacity['gpus']:g} GPU",
                 f"{ahead} queued job(s) ahead of it"]
        if self.paused:
            parts.append("the dispatcher is paused")
        return "; ".join(parts)

    # -- launching ---------------------------------------------------------------------
    def _launch_what_fits(self) -> None:
        capacity = self.capacity()
        free_cpus = capacity["cpus"] - sum(f.cpus for f in self.in_flight.values())
        free_gpus = capacity["gpus"] - sum(f.gpus for f in self.in_flight.values())
        while True:
            def fits(record: JobRecord, cpus_free: float = free_cpus,
                     gpus_free: float = free_gpus) -> bool:
                cpus, gpus = reserved(record, capacity)
                return cpus <= cpus_free + 1e-9 and gpus <= gpus_free + 1e-9

            record = self.store.claim_next(fits=fits, job_types=JOB_TYPES)
            if record is None:
                return
            cpus, gpus = reserved(record, capacity)
            free_cpus, free_gpus = free_cpus - cpus, free_gpus - gpus
            self._launch(record, cpus, gpus)

    def _launch(self, record: JobRecord, cpus: float, gpus: float) -> None:
        if record.job_type == "sweep":
            # The driver holds no CPU; Tune places the trials. A relaunched sweep continues
            # its MLflow parent run and resumes from Tune's saved state.
            ref = sweep_task.remote(record.id, record.spec, self._worker_settings, self._board,
                                    record.mlflow_run_id)
        else:
            resources = record.spec.get("resources", {})
            held = {"num_cpus": cpus, "num_gpus": gpus, "resources": resources.get("custom") or {}}
            if resources.get("workers", 1) > 1:  # Ray Train's workers hold the resources
                held = {"num_cpus": 0, "num_gpus": 0, "resources": {}}
            ref = experiment_task.options(**held).remote(
                record.id, record.spec, self._worker_settings, self._board,
                record.mlflow_run_id if record.attempts > 1 else None)
        self.in_flight[record.id] = InFlight(record, ref, cpus, gpus)
        ref.future().add_done_callback(lambda _: self.wake())
        JOBS_STARTED.labels(job_type=record.job_type).inc()
        DISPATCH_LATENCY.observe(max(0.0, (now() - record.created_at).total_seconds()))
        log.info("launched job", extra={"job_id": record.id, "job_type": record.job_type,
                                        "attempt": record.attempts})

    # -- following -----------------------------------------------------------------------
    def _write_progress(self) -> None:
        if self._board is None:
            return
        self._last_progress = time.monotonic()
        jobs, trials = ray.get(self._board.drain_all.remote())
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

    def _collect_finished(self) -> None:
        if not self.in_flight:
            return
        refs = [f.ref for f in self.in_flight.values()]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        if not ready:
            return
        self._write_progress()  # the last epoch's report may still be on the board
        for job_id, flight in list(self.in_flight.items()):
            if flight.ref in ready:
                del self.in_flight[job_id]
                self._record_outcome(flight)
                if flight.record.job_type == "sweep":
                    self._board.forget_sweep.remote(job_id)

    def _record_outcome(self, flight: InFlight) -> None:
        job_id = flight.record.id
        try:
            result = ray.get(flight.ref)
        except ray.exceptions.TaskCancelledError:
            return  # cancelled through the store; already final there
        except _SYSTEM_ERRORS as exc:
            self._retry_or_fail(flight.record, f"the Ray worker failed: {exc}")
            return
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if exc.cause is not None else exc
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

    def _stop_cancelled(self) -> None:
        now = time.monotonic()
        if not self.in_flight or now - self._last_cancel_poll < CANCEL_POLL_S:
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
                self.cancel_task(job_id, record.mlflow_run_id)

    def cancel_task(self, job_id: str, mlflow_run_id: str | None) -> None:
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
        flight = self.in_flight.pop(job_id, None)
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
