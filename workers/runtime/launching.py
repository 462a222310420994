"""Launching queued jobs on Ray: the best queued jobs that fit in the cluster's free CPUs and
GPUs, each as its Ray task with the resources it holds. A sweep's driver holds none; it
reserves its trials' (`sweep_jobs.reserved`)."""

from __future__ import annotations

import logging
from typing import Any

from services.lifecycle import Status, now
from services.observability import DISPATCH_LATENCY, JOBS_STARTED
from services.resources import beyond_node, fits, node_ask
from services.store import JobRecord
from workers.runtime.in_flight import InFlight, InFlightJobs
from workers.runtime.ray_tasks import experiment_task, sweep_task
from workers.runtime.sweep_jobs import reserved

log = logging.getLogger("layerwise.dispatcher")

JOB_TYPES = ("experiment", "sweep")


class LaunchRefused(Exception):
    """The job cannot run as asked (Ray refused its options, or no node has what it needs):
    it fails at once with this reason rather than being retried."""


class Launching(InFlightJobs):
    def _launch_what_fits(self, tick_started: float) -> None:
        if self._board_checked < tick_started:  # a task given a dead board's handle would
            self._write_progress()  # report to nobody: this replaces a dead board first
        capacity = self.capacity()
        free_cpus, free_gpus = capacity["cpus"] - self._held[0], capacity["gpus"] - self._held[1]
        while True:
            def fits_free(record: JobRecord, cpus_free: float = free_cpus,
                          gpus_free: float = free_gpus) -> bool:
                cpus, gpus = reserved(record, capacity)
                return fits(cpus, cpus_free) and fits(gpus, gpus_free)

            record = self.store.claim_next(fits=fits_free, job_types=JOB_TYPES)
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
        asked = node_ask(resources)
        short = [f"{asked[name]:g} {name} (the largest node has {largest.get(name, 0.0):g})"
                 for name in beyond_node(asked, largest)]
        if short:
            raise LaunchRefused(f"no node in the cluster has what it needs now: "
                                f"{', '.join(short)}; resubmit once such a node has joined")
        return task
