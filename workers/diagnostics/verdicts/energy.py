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

from services.contract.verdicts import Verdict
from workers.diagnostics.verdicts.record import Finding, RunRecord, num

HOPFIELD_CAPACITY = 0.138  # patterns per unit that Hebbian storage recalls reliably


def energy_findings(record: RunRecord, evidence: dict[str, Any]) -> list[Finding]:
    if record.uses_gradients:
        return []
    record.notes.append("this kind learns without gradients: its own checks replace the "
                        "gradient and unit checks")
    t = record.thresholds
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
            found.append(Finding(Verdict.DIVERGED, {"energy": own["energy_by_epoch"][-3:]}))
        elif rising:
            found.append(Finding(Verdict.UNSTABLE, {"energy_by_epoch": own["energy_by_epoch"]}))
    recon = record.curve("train/reconstruction_error")
    if recon.size:  # RBM
        own["reconstruction_error_by_epoch"] = [num(v) for v in recon]
        free = record.curve("train/free_energy")
        own["free_energy_by_epoch"] = [num(v) for v in free]
        improving = len(recon) < 2 or recon[-1] < recon[0] * (1 - t.chance_fraction)
        own["reconstruction_improving"] = bool(improving)
        if not (np.isfinite(recon).all() and np.isfinite(free).all()):
            found.append(Finding(Verdict.DIVERGED,
                                 {"free_energy": own["free_energy_by_epoch"][-3:]}))
        elif not improving:
            found.append(Finding(Verdict.NOT_LEARNING, {"reconstruction_error_by_epoch":
                                                        own["reconstruction_error_by_epoch"]}))
    own["recall_accuracy"] = num(record.last("val/accuracy"))
    evidence["own_checks"] = own
    return [*found, Finding(Verdict.NO_GRADIENTS, own, list(record.layers))]


def _rises(curve: np.ndarray, rise: float) -> bool:
    finite = curve[np.isfinite(curve)]
    if len(finite) < 2:
        return False
    return bool(finite[-1] > finite[0] + rise * max(abs(finite[0]), 1e-12))
