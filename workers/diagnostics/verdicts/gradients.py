"""Gradient checks: exploding (non-finite norms, the first layer far above the last, the total
growing), and vanishing (the first layer far below the last over the run, or in its early
phase when the run then stays near its baseline: a plain deep net whose first layers never
got a gradient worth the name, though the ratio recovers later, is stuck all the same)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from services.contract.verdicts import Verdict
from workers.diagnostics.verdicts.record import Finding, RunRecord, num


def gradient_findings(record: RunRecord, evidence: dict[str, Any], *, near_baseline: bool
                      ) -> list[Finding]:
    norms, layers, t = record.norms, record.layers, record.thresholds
    grads = norms.series("grad_norm", layers) if norms is not None else None
    if not record.uses_gradients:
        return []
    if grads is None or len(grads) == 0:
        record.notes.append("no per-layer gradient norms were logged (diagnostics.grad_norms): "
                            "the gradient checks were skipped")
        return []
    found: list[Finding] = []
    finite = np.isfinite(grads).all(axis=1)  # (S,)
    evidence["grad_norm_nonfinite_steps"] = int((~finite).sum())
    first, last = grads[finite, 0], grads[finite, -1]
    evidence["grad_norm_median"] = {layer: num(np.median(grads[finite, i]))
                                    for i, layer in enumerate(layers)} if finite.any() else {}
    ratio = median_ratio(first, last)
    early_n = max(1, math.ceil(len(first) * t.early_fraction))
    early = median_ratio(first[:early_n], last[:early_n])
    evidence["first_last_grad_ratio"] = num(ratio)
    evidence["first_last_grad_ratio_start"] = num(early)
    evidence["first_last_grad_ratio_end"] = num(median_ratio(first[-early_n:], last[-early_n:]))
    growth = _total_growth(record)
    evidence["grad_norm_total_growth"] = num(growth)
    explode = {k: evidence[k] for k in ("grad_norm_nonfinite_steps", "first_last_grad_ratio",
                                        "grad_norm_total_growth")}
    if (not finite.all() or (ratio is not None and ratio > t.exploding_ratio)
            or (growth is not None and growth > t.exploding_growth)):
        found.append(Finding(Verdict.EXPLODING, explode,
                             _steepest(grads[finite], layers, high=True)))
    vanishing = ratio is not None and ratio < t.vanishing_ratio
    early_vanishing = near_baseline and early is not None and early < t.vanishing_ratio_early
    if vanishing or early_vanishing:
        found.append(Finding(Verdict.VANISHING, {
            "first_last_grad_ratio": num(ratio), "first_last_grad_ratio_start": num(early),
            "phase": "run" if vanishing else "early"},
            _steepest(grads[finite], layers, high=False)))
    return found


def median_ratio(first: np.ndarray, last: np.ndarray) -> float | None:
    """Median of first/last over the steps where the last layer has a gradient."""
    usable = last > 0
    if not usable.any():
        return None
    return float(np.median(first[usable] / last[usable]))


def _total_growth(record: RunRecord) -> float | None:
    total = record.norms.column("grad_norm/total") if record.norms is not None else None
    if total is None or not np.isfinite(total).any():
        return None
    total = total[np.isfinite(total)]
    early = float(np.median(total[:max(1, len(total) // 10)]))
    return float(total.max()) / early if early > 0 else math.inf


def _steepest(grads: np.ndarray, layers: list[str], *, high: bool) -> list[str]:
    """The layers whose median gradient is furthest from the last layer's (below it for
    vanishing, above for exploding), input to output: at most half of them."""
    if not len(grads) or len(layers) < 2:
        return list(layers[:1])
    medians = np.median(grads, axis=0)
    ref = medians[-1] if medians[-1] > 0 else 1.0
    scale = medians / ref
    order = np.argsort(-scale if high else scale)[:max(1, len(layers) // 2)]
    return [layers[i] for i in sorted(order)]
