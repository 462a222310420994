"""What the checks read and what they return: one run's measurements, and findings.

A `RunRecord` holds what the loop already measured (host copies only): the per-layer norm
history, the epoch metrics, the last activation sample, a sample of each hidden layer's weight
rows, the task's baseline and the spec. Every check takes a record and returns findings; a
check whose measurement is missing returns none and may add a note.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from services.contract.spec import DiagnosisThresholds

if TYPE_CHECKING:
    from services.contract.spec import ExperimentSpec
    from workers.diagnostics.history import NormHistory
    from workers.diagnostics.verdicts.baseline import Baseline

# Causes before symptoms: the primary verdict is the first finding in this order.
ORDER = ("diverged", "exploding", "symmetric", "dead_units", "saturated", "vanishing",
         "not_learning", "unstable", "overfitting", "slow", "no_gradients")
VERDICTS = ("healthy", *ORDER)


@dataclass
class Finding:
    verdict: str
    evidence: dict[str, Any]
    layers: list[str] = field(default_factory=list)
    fix: dict[str, Any] = field(default_factory=dict)
    # Further fixes to try, in order, when `fix` did not help (`remedies`).
    alternatives: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RunRecord:
    """One run's measurements so far (or at its end)."""

    layers: list[str]
    thresholds: DiagnosisThresholds
    history: NormHistory | None = None
    epochs: list[dict[str, float]] = field(default_factory=list)  # epoch metrics, in order
    epoch_steps: list[int] = field(default_factory=list)
    activations: dict[str, float] = field(default_factory=dict)  # the last sample, as logged
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # hidden layer -> rows (U, F)
    baseline: Baseline | None = None
    spec: ExperimentSpec | None = None
    uses_gradients: bool = True
    total_epochs: int | None = None  # the epochs the run will have (None: what ran)
    final: dict[str, Any] = field(default_factory=dict)  # the loop's final metrics, if over
    notes: list[str] = field(default_factory=list)

    def curve(self, key: str) -> np.ndarray:
        """An epoch metric over the epochs that logged it."""
        return np.asarray([m[key] for m in self.epochs if key in m], dtype=np.float64)

    def last(self, key: str) -> float | None:
        """The final metric when the run is over, else the last epoch's."""
        value = self.final.get(key)
        if value is None:
            values = self.curve(key)
            value = values[-1] if len(values) else None
        return None if value is None else float(value)

    def update_ratio(self) -> float | None:
        """The median ||dW|| / ||W|| over layers and logged steps: how far each step moves the
        weights, whatever their scale (None without a norm history)."""
        if self.history is None:
            return None
        updates = self.history.series("update_norm", self.layers)
        weights = self.history.series("weight_norm", self.layers)
        if updates is None or weights is None or not len(updates):
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = updates / weights
        return float(np.nanmedian(ratios)) if np.isfinite(ratios).any() else None

    @property
    def fraction_done(self) -> float:
        total = self.total_epochs or len(self.epochs) or 1
        return min(1.0, len(self.epochs) / total)


@dataclass
class Diagnosis:
    verdict: str
    findings: list[Finding]
    baseline: dict[str, Any] | None
    detected_at_step: int | None
    notes: list[str]
    thresholds: dict[str, Any]
    layers: list[str]
    evidence: dict[str, Any]  # every measurement taken, the findings' and the rest

    @property
    def verdicts(self) -> list[str]:
        return [f.verdict for f in self.findings]

    def as_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))


def num(value: Any) -> float | None:
    """A JSON-safe float (JSON has no NaN or infinity): None for missing or NaN, the largest
    float for an infinity."""
    if value is None:
        return None
    value = float(value)
    if math.isnan(value):
        return None
    if math.isinf(value):
        return math.copysign(1.7976931348623157e308, value)
    return value


def json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return num(value)
    return value
