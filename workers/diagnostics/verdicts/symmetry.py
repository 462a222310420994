"""Symmetric units: a hidden layer whose units all have the same incoming weights computes one
feature however wide it is (zero or constant init: every unit gets the same gradient forever).

Rows are each unit's incoming weights (a dense layer's rows, a conv layer's filters), a sample
per layer copied to the host before each judgement (`workers.diagnostics.weight_rows`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from services.contract.verdicts import Verdict
from workers.diagnostics.verdicts.record import Finding, RunRecord, num


def symmetry_findings(record: RunRecord, evidence: dict[str, Any]) -> list[Finding]:
    if not record.weights:
        return []
    spreads = {layer: _spread(rows) for layer, rows in record.weights.items()}
    evidence["weight_row_spread"] = {layer: num(v) for layer, v in spreads.items()}
    symmetric = [layer for layer in record.layers
                 if layer in spreads and spreads[layer] < record.thresholds.symmetric_spread]
    if not symmetric:
        return []
    return [Finding(Verdict.SYMMETRIC, {"weight_row_spread": {
        layer: num(spreads[layer]) for layer in symmetric}}, symmetric)]


def _spread(rows: np.ndarray) -> float:
    """How far the rows are from their mean row, relative to the rows' size: 0 when every unit
    has the same incoming weights (all-zero rows included)."""
    scale = float(np.abs(rows).max()) if rows.size else 0.0
    if scale == 0.0:
        return 0.0
    return float(np.abs(rows - rows.mean(axis=0, keepdims=True)).max()) / scale
