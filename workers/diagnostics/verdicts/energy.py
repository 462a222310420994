"""Kinds that learn without gradients (Hopfield storage, RBM contrastive divergence) get their
own checks instead of the gradient and unit ones:

- Hopfield  recall: the share of validation patterns restored exactly, against answering the
            corrupted input (the baseline), and the load against the ~0.138 N capacity of
            Hebbian storage; energy: the recalled states' mean energy must be finite and not
            rise over the epochs (storage deepens the minima);
- RBM       reconstruction error: it must fall over the epochs and end below the mean-input
            predictor's; free energy: finite.

These kinds always list a `no_gradients` finding carrying their own checks' evidence; the
verdict is `healthy` when those checks pass, otherwise the failing condition (`not_learning`,
`unstable`, `diverged`) with the `no_gradients` finding after it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from workers.diagnostics.verdicts import fixes
from workers.diagnostics.verdicts.record import Finding, RunRecord, num

HOPFIELD_CAPACITY = 0.138  # patterns per unit that Hebbian storage recalls reliably


def energy_findings(record: RunRecord, evidence: dict[str, Any]) -> list[Finding]:
    if record.uses_gradients:
        return []
    record.notes.append("this kind learns without gradients: its own checks replace the "
                        "gradient and unit checks")
    spec, t = record.spec, record.thresholds
    own: dict[str, Any] = {}
    found: list[Finding] = []
    energy = record.curve("train/energy")
    if energy.size:  # Hopfield
        own["energy_by_epoch"] = [num(v) for v in energy]
        load = record.last("train/load")
        own["load"], own["capacity"] = num(load), HOPFIELD_CAPACITY
        own["over_capacity"] = load is not None and load > HOPFIELD_CAPACITY
        rising = _rises(energy, t.unstable_rise)
        own["energy_decreasing"] = not rising
        if not np.isfinite(energy).all():
            found.append(Finding("diverged", {"energy": own["energy_by_epoch"][-3:]}))
        elif rising:
            found.append(Finding("unstable", {"energy_by_epoch": own["energy_by_epoch"]}))
    recon = record.curve("train/reconstruction_error")
    if recon.size:  # RBM
        own["reconstruction_error_by_epoch"] = [num(v) for v in recon]
        free = record.curve("train/free_energy")
        own["free_energy_by_epoch"] = [num(v) for v in free]
        improving = len(recon) < 2 or recon[-1] < recon[0] * (1 - t.chance_fraction)
        own["reconstruction_improving"] = bool(improving)
        if not (np.isfinite(recon).all() and np.isfinite(free).all()):
            found.append(Finding("diverged", {"free_energy": own["free_energy_by_epoch"][-3:]},
                                 [], _rbm_fix(spec, 0.1)))
        elif not improving:
            found.append(Finding("not_learning", {"reconstruction_error_by_epoch":
                                                  own["reconstruction_error_by_epoch"]},
                                 [], _rbm_fix(spec, 2.0)))
    own["recall_accuracy"] = num(record.last("val/accuracy"))
    evidence["own_checks"] = own
    return [*found, Finding("no_gradients", own, list(record.layers))]


def no_gradient_fix(record: RunRecord) -> dict[str, Any]:
    """The fix of a non-gradient kind stuck at its baseline: an RBM gets more hidden units;
    a Hopfield net over capacity needs fewer patterns (data, not spec: no fix)."""
    return _rbm_fix(record.spec, 2.0)


def _rbm_fix(spec: Any, factor: float) -> dict[str, Any]:
    if spec is None or not fixes.has(spec, "model.hidden") or spec.model.kind != "rbm":
        return {}
    if factor < 1:
        return fixes.compose(spec, {"model.lr": float(f"{spec.model.lr * factor:.3g}")})
    return fixes.compose(spec, {"model.hidden": int(spec.model.hidden * factor)},
                         {"model.k": spec.model.k * 5} if spec.model.k < 5 else {})


def _rises(curve: np.ndarray, rise: float) -> bool:
    finite = curve[np.isfinite(curve)]
    if len(finite) < 2:
        return False
    return bool(finite[-1] > finite[0] + rise * max(abs(finite[0]), 1e-12))
