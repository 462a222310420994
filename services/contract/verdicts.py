"""Every verdict a diagnosis can reach: one name each, used by the diagnosis engine (its
findings and its remedies table), by a spec's `expect: {diagnosis: ...}` and by the job record.

The order is the one the spec's schema lists them in (docs/ quotes it); the engine's priority
order (causes before symptoms) is its own and lives beside it.
"""

from __future__ import annotations

from enum import StrEnum


class Verdict(StrEnum):
    HEALTHY = "healthy"
    NOT_LEARNING = "not_learning"
    VANISHING = "vanishing"
    EXPLODING = "exploding"
    DEAD_UNITS = "dead_units"
    SATURATED = "saturated"
    SYMMETRIC = "symmetric"
    UNSTABLE = "unstable"
    SLOW = "slow"
    OVERFITTING = "overfitting"
    DIVERGED = "diverged"
    NO_GRADIENTS = "no_gradients"
    BAD_DATA = "bad_data"  # the training data shows the fault (workers/data/statistics.py)
