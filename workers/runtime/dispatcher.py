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

By concern: the in-flight table, the progress drained into the store and the outcomes recorded
(`in_flight.py`); launching (`launching.py`); cancelling and recovery (`cancelling.py`); here,
the connection to Ray, the thread that ticks and its health.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import ray

from services.settings import Settings
from services.store import JobStore
from workers.runtime.cancelling import Cancelling
from workers.runtime.in_flight import InFlight
from workers.runtime.launching import JOB_TYPES, Launching, LaunchRefused
from workers.runtime.progress_board import progress_board
from workers.runtime.sweep_jobs import requested, reserved
from workers.worker_settings import NAMESPACE

# Names that were defined here before the dispatcher was split by concern.
__all__ = ["JOB_TYPES", "Dispatcher", "InFlight", "LaunchRefused", "TickState", "ensure_ray",
           "local_ray_config", "requested", "reserved"]

log = logging.getLogger("layerwise.dispatcher")

# Reported progress is written to the store at most this often (and whenever a task ends):
# merging a sweep's trial table on every 50 ms tick was most of the service's CPU during a sweep
# of short trials. Without a wake-up (a submission here, a task that ended), the queue is
# checked as often: jobs queued by another process (`serve --no-dispatcher`) wait that long.
PROGRESS_EVERY_S = 0.25
QUEUE_POLL_S = 0.25
WARM_WORKERS_SPARE = 8  # idle worker processes a local Ray keeps beyond one per CPU
# After a failed tick the next comes this much later and runs every step (a tick that only
# skipped the failing step would pass for a recovery).
FAILED_TICK_RETRY_S = 0.5
# /readyz says not ready once ticks have failed without a success for this long (a single
# failed tick, e.g. a dropped database connection, does not), or one tick runs this long.
UNREADY_AFTER_S = 10.0
STUCK_AFTER_S = 60.0
LOG_FAILURES_EVERY_S = 30.0  # a failing tick's traceback is logged once, then a line this often


def ensure_ray(settings: Settings) -> bool:
    """Join RAY_ADDRESS when set, else start a local Ray (seconds: once per process). Returns
    whether this call connected (False: this process was connected already)."""
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
    trial actors): the workers that had imported torch and opened the tracking store went within
    a second of a sweep's end, and the next sweep paid seconds to warm new ones (BENCHMARKS.md).
    A cluster sets the same on its nodes with the environment variable
    RAY_num_workers_soft_limit."""
    return {"num_workers_soft_limit": (num_cpus or os.cpu_count() or 1) + WARM_WORKERS_SPARE}


@dataclass(frozen=True)
class TickState:
    """What the dispatcher thread last published about its ticks. Replaced whole, so a
    request thread (/readyz) reads one consistent state."""
    started: float | None = None  # monotonic start of the tick running now; None between ticks
    failures: int = 0  # consecutive failed ticks
    failing_since: float | None = None  # monotonic time of the first of them
    error: str = ""  # the last failure


class Dispatcher(Launching, Cancelling):
    """Launching (`launching.py`), cancelling and recovery (`cancelling.py`) over the in-flight
    table (`in_flight.py`); here, the thread that ticks them and its health."""

    def __init__(self, store: JobStore, settings: Settings):
        super().__init__(store, settings)
        self._ticks = TickState()
        self._last_failure_log = 0.0
        self._stop = threading.Event()
        self._connected_ray = False
        self._last_queue_poll = 0.0

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
