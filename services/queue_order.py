"""Which queued job goes next: the queue's policy (`LAYERWISE_QUEUE_POLICY`).

- `fair` (the default): priority first, always (a higher priority goes before any lower one
  that also fits). Among jobs of the same priority, the owner with the smallest dominant share
  of what the dispatcher runs now goes next: an owner's share is the larger of its CPUs over
  the cluster's CPUs and its GPUs over the cluster's GPUs (Dominant Resource Fairness, as in
  Mesos and YARN), so an owner who queued a thousand jobs first does not hold the cluster while
  another's jobs wait; owners with equal shares go in the order of their oldest job. One owner's
  jobs run in submission order.
- `fifo`: priority, then submission order, whoever the owner.

In both, a job that does not fit in what is free is passed over for one that does (backfill):
a large job can wait behind smaller ones. The shares are of what this dispatcher launched;
several dispatchers (`layerwise dispatcher` beside each other) each share what they run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from services.records import JobRecord


@dataclass
class Shares:
    """What each owner holds now, against the cluster's capacity."""

    cpus: float  # the cluster's
    gpus: float
    held: dict[str, tuple[float, float]] = field(default_factory=dict)  # owner -> (cpus, gpus)

    def of(self, owner: str) -> float:
        cpus, gpus = self.held.get(owner, (0.0, 0.0))
        return max(cpus / self.cpus if self.cpus > 0 else 0.0,
                   gpus / self.gpus if self.gpus > 0 else 0.0)

    def add(self, owner: str, cpus: float, gpus: float) -> None:
        held_cpus, held_gpus = self.held.get(owner, (0.0, 0.0))
        self.held[owner] = (held_cpus + cpus, held_gpus + gpus)


def next_job(candidates: Iterable[JobRecord], shares: Shares | None,
             fits: Callable[[JobRecord], bool]) -> JobRecord | None:
    """The job to launch next among `candidates` (given in the queue's order: priority, then
    submission), or None if none fits. `shares`: None for `fifo`."""
    ordered = list(candidates)
    if shares is not None:  # a stable sort: equal keys keep the queue's order
        ordered.sort(key=lambda record: (-record.priority, shares.of(record.owner)))
    return next((record for record in ordered if fits(record)), None)
