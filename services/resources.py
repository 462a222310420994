"""What a job asks of the cluster and whether it fits: the one arithmetic behind the refusal
at submission, the dispatcher's launch of a task and its reservation of a sweep's trials.

A spec's `resources` section is read as stored (a plain mapping): the dispatcher reads job
records whose spec may not validate any more (a record written straight to the store), and
Ray, not this module, names what is wrong with such a value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

# Fractional CPUs add up with float error (0.1 + 0.2 > 0.3): an exact fit must still fit.
SLACK = 1e-9


class Cluster(Protocol):
    """What the checks read of the cluster (the dispatcher answers from Ray)."""

    def largest_node(self) -> dict[str, float]:
        """The most of each resource (Ray's names: CPU, GPU, custom) any one node has."""
        ...

    def capacity(self) -> dict[str, float]:
        """The cluster's total {"cpus", "gpus"}."""
        ...


def fits(amount: float, available: float) -> bool:
    return amount <= available + SLACK


def times_fit(amount: float, available: float) -> float:
    """How many of `amount` fit in `available` (infinitely many of nothing)."""
    return math.floor(available / amount + SLACK) if amount > 0 else math.inf


def node_ask(resources: Mapping[str, Any]) -> dict[str, Any]:
    """What one task (one data-parallel worker) asks of the node it runs on, by Ray's names."""
    return {"CPU": float(resources.get("cpus", 1.0)), "GPU": float(resources.get("gpus", 0.0)),
            **(resources.get("custom") or {})}


def run_ask(resources: Mapping[str, Any]) -> dict[str, float]:
    """The CPUs and GPUs of one run: all its data-parallel workers together."""
    workers = int(resources.get("workers", 1))
    return {"cpus": workers * float(resources.get("cpus", 1.0)),
            "gpus": workers * float(resources.get("gpus", 0.0))}


def beyond_node(asked: Mapping[str, float], largest: Mapping[str, float]) -> list[str]:
    """The resources of `asked` that no single node has as much of (a task runs on one)."""
    return [name for name, amount in asked.items()
            if not fits(amount, largest.get(name, 0.0))]


def beyond_cluster(asked: Mapping[str, float], capacity: Mapping[str, float]) -> list[str]:
    """The keys ("cpus", "gpus") of `asked` that the whole cluster has less of."""
    return [key for key, amount in asked.items() if not fits(amount, capacity[key])]
