"""The diagnosis of one run: every check on what the run measured, combined so the primary
verdict names the cause (the order of `ORDER`: diverged, exploding, symmetric, dead_units,
saturated, vanishing, then the symptoms not_learning, unstable, overfitting, slow).

Chance is never healthy: a run that ends near its baseline gets at least `not_learning`,
whatever its gradients. When the run ends near its baseline, an early-phase gradient ratio
below `vanishing_ratio_early` counts as vanishing too (the cause of its standing still). A run
the loop stopped because its loss was not finite (`Divergence`) is `diverged` from that step.
Each finding's fix and its alternatives come from `remedies`, one table for every verdict.
Where that order would name a symptom first, `order.in_order_to_act` puts the cause ahead (a
model memorizing its training split is overfitting before not_learning); recurrent nets get
vanishing through time (`through_time`); a healthy run still on its way gets the estimate
`needs_more_epochs` (curves) as a field and a note.
With the training split's statistics (`RunRecord.data`), the data's faults are `bad_data`
findings, ahead of the mechanism they caused when the run has a problem (`data_faults`).
Last, the run's result draws two lines (`gates`): a run that went most of the way from its
baseline to perfect is healthy unless a hard fault holds (its mechanism findings become
notes), and one that ended short of a fair share of it, with no finding and not still
improving, is `not_learning`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from services.contract.diagnostics_spec import DiagnosisThresholds
from services.contract.verdicts import Verdict
from workers.diagnostics.verdicts import data_faults, energy, gates, remedies
from workers.diagnostics.verdicts.curves import curve_findings
from workers.diagnostics.verdicts.gradients import gradient_findings
from workers.diagnostics.verdicts.norms import NormCurves
from workers.diagnostics.verdicts.order import in_order_to_act
from workers.diagnostics.verdicts.record import (
    ORDER,
    Diagnosis,
    Divergence,
    Finding,
    RunRecord,
    num,
)
from workers.diagnostics.verdicts.symmetry import symmetry_findings
from workers.diagnostics.verdicts.through_time import through_time_findings
from workers.diagnostics.verdicts.units import unit_findings


def diagnose(norms: NormCurves | None, layers: list[str], activations: dict[str, float],
             thresholds: DiagnosisThresholds, *, uses_gradients: bool = True,
             **measured: Any) -> Diagnosis:
    """The diagnosis from the per-layer norms, the last activation sample and, as keywords,
    the rest of a `RunRecord` (epochs, epoch_steps, weights, baseline, spec, total_epochs,
    final)."""
    return diagnose_record(RunRecord(layers, thresholds, norms=norms, activations=activations,
                                     uses_gradients=uses_gradients, **measured))


def diagnose_record(record: RunRecord, *, detected_at_step: int | None = None,
                    diverged: Divergence | None = None) -> Diagnosis:
    """The diagnosis of `record`; with `diverged`, of a run the loop stopped at that step."""
    evidence: dict[str, Any] = {}
    curves = curve_findings(record, evidence)
    near_baseline = any(f.verdict == Verdict.NOT_LEARNING for f in curves)
    if record.uses_gradients:
        found = [*through_time_findings(record, evidence, near_baseline=near_baseline),
                 *gradient_findings(record, evidence, near_baseline=near_baseline),
                 *unit_findings(record, evidence), *symmetry_findings(record, evidence),
                 *curves]
    else:
        own = energy.energy_findings(record, evidence)
        found = [*own, *(f for f in curves if f.verdict == Verdict.NOT_LEARNING)]
    if record.update_ratios is not None:
        evidence.update(_update_ratios(record))
    if record.baseline is None:
        record.notes.append("no baseline for this task: whether the run beats chance was not "
                            "judged")
    for finding in _merge(found):  # a check's own evidence joins the run's
        evidence.setdefault(finding.verdict, finding.evidence)
    if diverged is not None:  # the loop's own finding: it stopped there
        found.insert(0, Finding(Verdict.DIVERGED, diverged.evidence()))
        detected_at_step = diverged.step
    findings = in_order_to_act(_merge(found))
    poor = gates.poor_fit(record, evidence) if record.uses_gradients and not any(
        f.verdict != Verdict.NO_GRADIENTS for f in findings) else None
    if poor is not None:  # ended short of a fair share of the way: not healthy (gates)
        findings.insert(0, poor)
        evidence.setdefault(poor.verdict, poor.evidence)
    if record.data is not None:  # the data's faults, ahead of what they caused (data_faults)
        findings = data_faults.place(record.data, findings, record.notes)
        evidence["data"] = record.data.as_dict()
    findings = gates.gate_good_fit(findings, record)  # a good fit: only hard faults remain
    remedies.attach(findings, record)
    causes = [f for f in findings if f.verdict != Verdict.NO_GRADIENTS]
    verdict = causes[0].verdict if causes else Verdict.HEALTHY
    more = evidence.get("needs_more_epochs") if verdict == Verdict.HEALTHY else None
    if more is not None:
        record.notes.append(f"needs_more_epochs: {more} (still improving at a steady pace at "
                            "its end: about that many more epochs to close 90% of the gap to "
                            "a perfect score; training.epochs)")
    return Diagnosis(needs_more_epochs=more, verdict=verdict, findings=findings,
                     baseline=record.baseline.as_dict() if record.baseline else None,
                     detected_at_step=detected_at_step if verdict != Verdict.HEALTHY else None,
                     notes=list(dict.fromkeys(record.notes)),
                     thresholds=record.thresholds.model_dump(), layers=list(record.layers),
                     evidence=evidence)


def _merge(found: list[Finding]) -> list[Finding]:
    """One finding per verdict (the first), in `ORDER`."""
    first: dict[str, Finding] = {}
    for finding in found:
        first.setdefault(finding.verdict, finding)
    return [first[v] for v in ORDER if v in first]


def _update_ratios(record: RunRecord) -> dict[str, Any]:
    """Median ||dW|| / ||W|| per layer: how fast each layer learns, independent of scale."""
    ratios = record.update_ratios
    assert ratios is not None
    return {"update_weight_ratio_median": {
        layer: num(np.nanmedian(ratios[:, i])) if np.isfinite(ratios[:, i]).any() else None
        for i, layer in enumerate(record.layers)}}
