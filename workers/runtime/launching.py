"""Launching queued jobs on Ray: the best queued jobs that fit in the cluster's free CPUs and
GPUs, each as its Ray task with the resources it holds. A sweep's driver holds none; it
reserves its trials' (`sweep_jobs.reserved`)."""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from services.contract import mlflow_names
from services.lifecycle import Status, now
from services.observability import DISPATCH_LATENCY, JOBS_STARTED
from services.queue_order import Shares, next_job
from services.records import JobRecord
from services.resources import beyond_node, fits, node_ask
from workers.runtime.attempts import LAUNCH_FAILED, Ending, kernel_oom_kills
from workers.runtime.in_flight import InFlight, InFlightJobs
from workers.runtime.ray_tasks import experiment_task, sweep_task
from workers.runtime.sweep_jobs import reserved

log = logging.getLogger("layerwise.dispatcher")

JOB_TYPES = ("experiment", "sweep")
# At most this many of each owner's next queued jobs are read at a time to choose among: a
# batch of launches ends when one owner's run out (and the next batch reads again). Few: every
# row read is a job record built (its spec parsed), for every owner with queued jobs; 16 of
# each of 20 owners took 40 ms, 2 took 4 ms.
HEADS_PER_OWNER = 8


@dataclass
class _Room:
    """The CPUs and GPUs free for this tick's launches."""
    cpus: float
    gpus: float

    def give_back(self, owner: str, cpus: float, gpus: float, shares: Shares | None) -> None:
        """What a chosen job that did not launch had taken."""
        self.cpus, self.gpus = self.cpus + cpus, self.gpus + gpus
        if shares is not None:
            shares.add(owner, -cpus, -gpus)


class LaunchRefused(Exception):
    """The job cannot run as asked (Ray refused its options, or no node has what it needs):
    it fails at once with this reason rather than being retried."""


class Launching(InFlightJobs):
    # The Ray task that runs one experiment (a simulation swaps in its own: bench/cluster_sim).
    experiment_remote: Any = experiment_task

    def _launch_what_fits(self, tick_started: float) -> None:
        if self._board_checked < tick_started:  # a task given a dead board's handle would
            self._write_progress()  # report to nobody: this replaces a dead board first
        capacity = self.capacity()
        largest: dict[str, float] | None = None
        room = _Room(capacity["cpus"] - self._held[0], capacity["gpus"] - self._held[1])
        shares = self._shares(capacity) if self.settings.queue_policy == "fair" else None
        more = True
        while more:  # another batch only where one owner's jobs read ran out
            batch, more = self._choose_batch(capacity, room, shares)
            if not batch:
                return
            if largest is None:  # once a tick, when it launches: ray.nodes() asks every node
                largest = self.largest_node()
            # claim made them running: from here on, whatever happens is recorded on each
            # (a job left running but not in flight would be re-queued as an orphan).
            claimed = {record.id: record for record in self.store.claim(
                [record.id for record in batch])}
            for chosen in batch:
                record = claimed.get(chosen.id)
                cpus, gpus = reserved(chosen, capacity)
                if record is None:  # taken by another dispatcher, or cancelled: room back
                    room.give_back(chosen.owner, cpus, gpus, shares)
                    continue
                try:
                    self._launch(record, cpus, gpus, largest)
                except LaunchRefused as exc:
                    log.warning("job not launched: %s", exc, extra={"job_id": record.id})
                    self._finish(record.id, Status.FAILED, error=f"not launched: {exc}")
                    room.give_back(chosen.owner, cpus, gpus, shares)
                except Exception as exc:  # Ray itself failed: retried, and the tick fails
                    error = f"could not launch it on Ray: {type(exc).__name__}: {exc}"
                    ending = Ending(LAUNCH_FAILED, error, counted=False)  # not the job's doing
                    for other in batch[batch.index(chosen):]:  # this one and those after it
                        if other.id in claimed:
                            self._retry_or_fail(claimed[other.id], ending, error)
                    raise

    def _choose_batch(self, capacity: dict[str, float], room: _Room,
                      shares: Shares | None) -> tuple[list[JobRecord], bool]:
        """The next jobs to launch, chosen in the queue's order (`services.queue_order`) among
        each owner's next queued jobs, their resources taken from `room` and added to
        `shares`; and whether more may fit. Ends where an owner's jobs read run out: the next
        batch reads further."""
        # Jobs mostly ask for a CPU or more: as many of each owner's as could fit, and one
        # more (a batch that runs out of one owner's reads again).
        per_owner = max(2, min(HEADS_PER_OWNER, math.floor(room.cpus) + 1))
        heads = self.store.queue_heads(job_types=JOB_TYPES, per_owner=per_owner)
        left = Counter(record.owner for record in heads)
        batch: list[JobRecord] = []

        def fits_room(record: JobRecord) -> bool:
            cpus, gpus = reserved(record, capacity)
            return fits(cpus, room.cpus) and fits(gpus, room.gpus)

        while heads:
            record = next_job(heads, shares, fits_room)
            if record is None:
                return batch, False
            heads.remove(record)
            batch.append(record)
            cpus, gpus = reserved(record, capacity)
            room.cpus, room.gpus = room.cpus - cpus, room.gpus - gpus
            if shares is not None:
                shares.add(record.owner, cpus, gpus)
            left[record.owner] -= 1
            if left[record.owner] == 0:  # this owner may have more queued than were read
                return batch, True
        return batch, False

    def _shares(self, capacity: dict[str, float]) -> Shares:
        shares = Shares(cpus=capacity["cpus"], gpus=capacity["gpus"])
        for flight in self.in_flight.values():
            shares.add(flight.record.owner, flight.cpus, flight.gpus)
        return shares

    def _launch(self, record: JobRecord, cpus: float, gpus: float,
                largest: dict[str, float]) -> None:
        if record.job_type == "sweep":
            # The driver holds no CPU; Tune places the trials. A relaunched sweep continues
            # its MLflow parent run and resumes from Tune's saved state.
            ref = sweep_task.remote(record.id, record.spec, self._worker_settings, self._board,
                                    record.mlflow_run_id)
        else:
            ref = self._experiment_task(record, cpus, gpus, largest).remote(
                record.id, record.spec, self._worker_settings, self._board,
                record.mlflow_run_id if record.attempts > 1 else None,
                mlflow_names.repair_link_tags(record.repair_of, record.repair_candidate,
                                              record.parent_run_id))
        # A kernel OOM kill shows only as the kernel's count rising; read where Ray is local.
        oom_kills = None if self.settings.ray_address else kernel_oom_kills()
        self._track(InFlight(record, ref, cpus, gpus, oom_kills=oom_kills))
        ref.future().add_done_callback(lambda _: self.wake())
        JOBS_STARTED.labels(job_type=record.job_type).inc()
        DISPATCH_LATENCY.observe(max(0.0, (now() - record.created_at).total_seconds()))
        log.info("launched job", extra={"job_id": record.id, "job_type": record.job_type,
                                        "attempt": record.attempts})

    def _experiment_task(self, record: JobRecord, cpus: float, gpus: float,
                         largest: dict[str, float]) -> Any:
        """The task with the resources it holds; LaunchRefused if it could never start: Ray
        would otherwise keep an infeasible task pending, the job `running`, forever."""
        resources = record.spec.get("resources", {})
        if resources.get("workers", 1) > 1:  # Ray Train's workers hold the resources
            return self.experiment_remote.options(num_cpus=0, num_gpus=0)
        custom = resources.get("custom") or {}
        try:
            task = self.experiment_remote.options(num_cpus=cpus, num_gpus=gpus, resources=custom)
        except (ValueError, TypeError) as exc:
            raise LaunchRefused(f"Ray refused resources.custom {custom}: {exc}; fix "
                                "resources.custom and resubmit") from exc
        asked = node_ask(resources)
        short = [f"{asked[name]:g} {name} (the largest node has {largest.get(name, 0.0):g})"
                 for name in beyond_node(asked, largest)]
        if short:
            raise LaunchRefused(f"no node in the cluster has what it needs now: "
                                f"{', '.join(short)}; resubmit once such a node has joined")
        return task
