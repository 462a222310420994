"""The gradient-flow verdict: why a network learns or does not, from its per-layer curves.

One of `exploding`, `dead_units`, `saturated`, `vanishing`, `healthy`, with the evidence:

- exploding   a gradient norm is not finite, or grad_norm/total rises to `exploding_growth`
              times its early level, or the first layer's gradient norm is above
              `exploding_ratio` times the last layer's;
- dead_units  more than `dead_fraction` of the ReLU units output 0 for every sampled example
              at the end of training;
- saturated   more than `saturated_fraction` of the sigmoid-like activations sit where their
              derivative is nearly 0 at the end of training;
- vanishing   the first layer's gradient norm is below `vanishing_ratio` times the last
              layer's (median over the run of the per-step ratio);
- healthy     none of these.

Dead and saturated units come before vanishing because they are its usual cause: the verdict
names the cause when it is measured. Every condition that holds is listed in `findings`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from services.contract.spec import DiagnosisThresholds
from workers.diagnostics.history import NormHistory

VERDICTS = ("exploding", "dead_units", "saturated", "vanishing", "healthy")


@dataclass
class Diagnosis:
    verdict: str
    findings: list[str]
    evidence: dict[str, Any]
    layers: list[str]
    thresholds: dict[str, float]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def diagnose(history: NormHistory | None, layers: list[str], activations: dict[str, float],
             thresholds: DiagnosisThresholds, *, uses_gradients: bool = True) -> Diagnosis:
    """The verdict on one run.

    Args:
        history: the per-layer norms the run logged (None when none were).
        layers: layer names, input to output.
        activations: the last sampled activation statistics, keyed as logged
            (`activation/dead_fraction`, `activation/saturated_fraction`, per module).
        thresholds: the spec's `diagnostics.thresholds`.
        uses_gradients: False for kinds that learn without gradients.
    """
    evidence: dict[str, Any] = {}
    notes: list[str] = []
    findings: list[str] = []
    grads = history.series("grad_norm", layers) if history is not None else None
    if not uses_gradients:
        notes.append("this kind learns without gradients: the gradient checks do not apply")
    elif grads is None or len(grads) == 0:
        notes.append("no per-layer gradient norms were logged (diagnostics.grad_norms): the "
                     "gradient checks were skipped")
    else:
        findings += _gradient_findings(grads, history, layers, thresholds, evidence)
    if history is not None:
        evidence.update(_update_ratios(history, layers))
    findings += _unit_findings(activations, thresholds, evidence)
    if not activations:
        notes.append("no activation statistics (diagnostics.activation_stats off, or no "
                     "ReLU/sigmoid/tanh modules to sample)")
    verdict = next((v for v in VERDICTS if v in findings), "healthy")
    return Diagnosis(verdict, [v for v in VERDICTS if v in findings], evidence, layers,
                     thresholds.model_dump(), notes)


def _gradient_findings(grads: np.ndarray, history: NormHistory | None, layers: list[str],
                       t: DiagnosisThresholds, evidence: dict[str, Any]) -> list[str]:
    found: list[str] = []
    finite = np.isfinite(grads).all(axis=1)  # (S,)
    evidence["grad_norm_nonfinite_steps"] = int((~finite).sum())
    if not finite.all():
        found.append("exploding")
    first, last = grads[finite, 0], grads[finite, -1]
    evidence["grad_norm_median"] = {layer: _num(np.median(grads[finite, i]))
                                    for i, layer in enumerate(layers)} if finite.any() else {}
    ratio = _median_ratio(first, last)
    evidence["first_last_grad_ratio"] = _num(ratio)
    evidence["first_last_grad_ratio_start"] = _num(_median_ratio(first[:5], last[:5]))
    evidence["first_last_grad_ratio_end"] = _num(_median_ratio(first[-5:], last[-5:]))
    if ratio is not None and ratio > t.exploding_ratio:
        found.append("exploding")
    if ratio is not None and ratio < t.vanishing_ratio:
        found.append("vanishing")
    total = history.column("grad_norm/total") if history is not None else None
    if total is not None and np.isfinite(total).any():
        total = total[np.isfinite(total)]
        early = float(np.median(total[:max(1, len(total) // 10)]))
        growth = float(total.max()) / early if early > 0 else math.inf
        evidence["grad_norm_total_growth"] = _num(growth)
        if growth > t.exploding_growth:
            found.append("exploding")
    return found


def _median_ratio(first: np.ndarray, last: np.ndarray) -> float | None:
    """Median of first/last over the steps where the last layer has a gradient."""
    usable = last > 0
    if not usable.any():
        return None
    return float(np.median(first[usable] / last[usable]))


def _update_ratios(history: NormHistory, layers: list[str]) -> dict[str, Any]:
    """Median ||dW|| / ||W|| per layer: how fast each layer learns, independent of scale."""
    updates = history.series("update_norm", layers)
    weights = history.series("weight_norm", layers)
    if updates is None or weights is None or len(updates) == 0:
        return {}
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = updates / weights
    return {"update_weight_ratio_median": {
        layer: _num(np.nanmedian(ratios[:, i])) if np.isfinite(ratios[:, i]).any() else None
        for i, layer in enumerate(layers)}}


def _unit_findings(activations: dict[str, float], t: DiagnosisThresholds,
                   evidence: dict[str, Any]) -> list[str]:
    found: list[str] = []
    dead = activations.get("activation/dead_fraction")
    saturated = activations.get("activation/saturated_fraction")
    if dead is not None:
        evidence["dead_fraction"] = _num(dead)
        if dead > t.dead_fraction:
            found.append("dead_units")
    if saturated is not None:
        evidence["saturated_fraction"] = _num(saturated)
        if saturated > t.saturated_fraction:
            found.append("saturated")
    per_module = {key.split("/", 2)[2]: _num(value) for key, value in activations.items()
                  if key.count("/") == 2}
    if per_module:
        evidence["unit_fraction_by_module"] = per_module
    return found


def _num(value: Any) -> float | None:
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
