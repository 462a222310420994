"""Unit checks from the last activation sample: dead ReLUs and saturated sigmoid-like units,
each localized to the layers whose activation modules are over the threshold."""

from __future__ import annotations

from typing import Any

from services.contract.verdicts import Verdict
from workers.diagnostics.verdicts.record import Finding, RunRecord, num


def unit_findings(record: RunRecord, evidence: dict[str, Any]) -> list[Finding]:
    activations, t = record.activations, record.thresholds
    if not activations:
        record.notes.append("no activation statistics (diagnostics.activation_stats off, or no "
                            "ReLU/sigmoid/tanh modules to sample)")
        return []
    per_module = {key.split("/", 2)[2]: num(value) for key, value in activations.items()
                  if key.count("/") == 2}
    if per_module:
        evidence["unit_fraction_by_module"] = per_module
    found: list[Finding] = []
    dead = activations.get("activation/dead_fraction")
    if dead is not None:
        evidence["dead_fraction"] = num(dead)
        if dead > t.dead_fraction:
            found.append(Finding(Verdict.DEAD_UNITS, {"dead_fraction": num(dead), **_modules(
                activations, "dead_fraction", t.dead_fraction)},
                _layers(record, activations, "dead_fraction", t.dead_fraction)))
    saturated = activations.get("activation/saturated_fraction")
    if saturated is not None:
        evidence["saturated_fraction"] = num(saturated)
        if saturated > t.saturated_fraction:
            found.append(Finding(Verdict.SATURATED, {
                "saturated_fraction": num(saturated),
                **_modules(activations, "saturated_fraction", t.saturated_fraction)},
                _layers(record, activations, "saturated_fraction", t.saturated_fraction)))
    return found


def _modules(activations: dict[str, float], what: str, above: float) -> dict[str, Any]:
    prefix = f"activation/{what}/"
    return {"modules": {key[len(prefix):]: num(v) for key, v in activations.items()
                        if key.startswith(prefix) and v > above}}


def _layers(record: RunRecord, activations: dict[str, float], what: str, above: float
            ) -> list[str]:
    """The layers (input to output) that hold an activation module over the threshold: the
    layer whose name is the module path's longest prefix."""
    prefix = f"activation/{what}/"
    modules = [key[len(prefix):] for key, v in activations.items()
               if key.startswith(prefix) and v > above]
    hit: set[str] = set()
    for module in modules:
        owners = [layer for layer in record.layers
                  if module == layer or module.startswith(f"{layer}.")]
        if owners:
            hit.add(max(owners, key=len))
    return [layer for layer in record.layers if layer in hit]
