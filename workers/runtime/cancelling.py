"""Stopping Ray work the store no longer wants, and recovering work nobody runs any more.

- Cancelling: a request thread hands a cancel over (`request_cancel`) and the dispatcher
  thread, the only writer of the in-flight table, stops the job's task in its next tick; a poll
  of the store also stops jobs cancelled by another process.
- Recovery: the dispatcher vouches for the jobs it runs (a heartbeat in the store) and queues
  again running jobs nobody vouched for (their dispatcher died, and with it, as their Ray
  owner, their tasks).
"""

from __future__ import annotations

import logging
import queue
import threading
import time

import ray
from mlflow.tracking import MlflowClient

from services.lifecycle import Status
from services.settings import Settings
from services.store import JobStore
from workers.runtime import sweep_jobs
from workers.runtime.attempts import SERVICE_RESTART, Ending
from workers.runtime.in_flight import InFlightJobs, unknown_job_ignored

log = logging.getLogger("layerwise.dispatcher")

CANCEL_POLL_S = 0.5
# A cancelled sweep's driver stops Tune (which frees the trials' placement groups) within a
# few seconds; only a driver that does not is killed.
SWEEP_STOP_GRACE_S = 30.0
# How long a cancel request waits for the dispatcher thread to stop the job's Ray task, so
# that the answer to it comes after the task was stopped (a tick takes milliseconds).
CANCEL_WAIT_S = 10.0


class Cancelling(InFlightJobs):
    def __init__(self, store: JobStore, settings: Settings):
        super().__init__(store, settings)
        self._cancels: queue.SimpleQueue[tuple[str, threading.Event]] = queue.SimpleQueue()
        self._last_cancel_poll = 0.0
        self._last_heartbeat = 0.0

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
                with unknown_job_ignored(job_id):  # deleted meanwhile: nothing to stop
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
            error = "its dispatcher stopped while it ran (service restart or crash)"
            # The service's trouble, not the job's: it does not use up the job's attempts.
            self._retry_or_fail(orphan, Ending(SERVICE_RESTART, (
                f"no heartbeat for over {self.settings.orphan_after_s:g} s from the dispatcher "
                "that ran it (it restarted, crashed or was too busy to vouch for it)"),
                counted=False), error)
