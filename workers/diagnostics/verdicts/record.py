"""What the checks read and what they return: one run's measurements, and findings.

A `RunRecord` holds plain data (numpy arrays, dicts, no model, no tracker): the per-layer
norm curves, the epoch metrics, the last activation sample, a sample of each hidden layer's
weight rows, the task's baseline and the spec; and, computed once and kept, what several
checks derive from them (the update/weight ratios, the progress against the baseline). Every
check takes a record and returns findings (their fixes come from `remedies`, one table for
every verdict); a check whose measurement is missing returns none and may add a note.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import Enum
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from services.contract.diagnostics_spec import DiagnosisThresholds
from services.contract.verdicts import Verdict
from workers.diagnostics.verdicts.baseline import Baseline
from workers.diagnostics.verdicts.norms import NormCurves, layer_update_ratios
from workers.diagnostics.verdicts.progress import Progress, measure_progress

if TYPE_CHECKING:
    from services.contract.spec import ExperimentSpec
    from workers.data.statistics import DataStats

# Causes before symptoms: the primary verdict is the first finding in this order (every
# verdict but `healthy`, which is the absence of findings). The names are the contract's.
ORDER = (Verdict.BAD_DATA, Verdict.DIVERGED, Verdict.EXPLODING, Verdict.SYMMETRIC,
         Verdict.DEAD_UNITS, Verdict.SATURATED, Verdict.VANISHING, Verdict.NOT_LEARNING,
         Verdict.UNSTABLE, Verdict.OVERFITTING, Verdict.SLOW, Verdict.NO_GRADIENTS)
VERDICTS = (Verdict.HEALTHY, *ORDER)  # every verdict, in that order (the bench's matrix)


@dataclass
class Finding:
    verdict: Verdict
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
    norms: NormCurves | None = None
    epochs: list[dict[str, float]] = field(default_factory=list)  # epoch metrics, in order
    epoch_steps: list[int] = field(default_factory=list)
    activations: dict[str, float] = field(default_factory=dict)  # the last sample, as logged
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # hidden layer -> rows (U, F)
    baseline: Baseline | None = None
    spec: ExperimentSpec | None = None
    uses_gradients: bool = True
    total_epochs: int | None = None  # the epochs the run will have (None: what ran)
    final: dict[str, Any] = field(default_factory=dict)  # the loop's final metrics, if over
    data: DataStats | None = None  # the training split's statistics (`data_faults`)
    # Recurrent nets: ||dJ/dh[1]|| / ||dJ/dh[T]||, how much of the last step's error reaches
    # the first step back through time, measured on a few training examples (None: not a
    # recurrent net, or not measured).
    through_time_ratio: float | None = None
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

    @cached_property
    def update_ratios(self) -> np.ndarray | None:
        """(S, L) ||dW|| / ||W|| per logged step and layer (None without both norms)."""
        return layer_update_ratios(self.norms, self.layers)

    @cached_property
    def update_ratio(self) -> float | None:
        """The median ||dW|| / ||W|| over layers and logged steps: how far each step moves the
        weights, whatever their scale (None without the norms)."""
        ratios = self.update_ratios
        return float(np.nanmedian(ratios)) if ratios is not None and np.isfinite(ratios).any() \
            else None

    @cached_property
    def progress(self) -> Progress | None:
        """The run's progress from its baseline toward a perfect score (None without one)."""
        return measure_progress(self.curve, self.baseline, self.final,
                                uses_gradients=self.uses_gradients)

    @property
    def fraction_done(self) -> float:
        total = self.total_epochs or len(self.epochs) or 1
        return min(1.0, len(self.epochs) / total)


@dataclass(frozen=True)
class Divergence:
    """The loop stopped at `step`, the first step whose loss was not finite (`Diverged`)."""

    message: str
    step: int
    steps_per_epoch: int | None = None
    # Where the training split holds NaN/inf ({"field": "x" | "y", "row": ...}), when it does:
    # then the data, not the rate, is the cause.
    non_finite_data: dict[str, Any] | None = None

    def evidence(self) -> dict[str, Any]:
        found = {"non_finite_data": self.non_finite_data} if self.non_finite_data else {}
        return {"error": self.message, "step": self.step, "steps_per_epoch": self.steps_per_epoch,
                **found}


@dataclass
class Diagnosis:
    verdict: Verdict
    findings: list[Finding]
    baseline: dict[str, Any] | None
    detected_at_step: int | None
    notes: list[str]
    thresholds: dict[str, Any]
    layers: list[str]
    evidence: dict[str, Any]  # every measurement taken, the findings' and the rest
    # A healthy run still improving at a steady pace at its end: about how many more epochs
    # it needs to close 90% of the gap between its baseline and perfect (None: finished).
    needs_more_epochs: int | None = None
    # The live diagnosis's calls, in order: [{step, verdict}] each time it changed.
    live_verdicts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def verdicts(self) -> list[Verdict]:
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
    if isinstance(value, Enum):  # a verdict: its name, as JSON and MLflow carry it
        return str(value.value)
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return num(value)
    return value
