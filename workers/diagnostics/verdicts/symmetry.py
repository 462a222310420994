"""Symmetric units: a hidden layer whose units all have the same incoming weights computes one
feature however wide it is (zero or constant init: every unit gets the same gradient forever).

Rows are each unit's incoming weights (a dense layer's rows, a conv layer's filters), a sample
of at most `MAX_ROWS` per layer copied to the host once per check.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from workers.diagnostics.verdicts import fixes
from workers.diagnostics.verdicts.record import Finding, RunRecord, num

MAX_ROWS = 64


@torch.no_grad()
def weight_rows(model: Any, layers: list[str]) -> dict[str, np.ndarray]:
    """{hidden layer: (U, F) sampled incoming-weight rows}; the output layer is left out (its
    units answer different targets)."""
    groups = model.layer_groups()
    rows: dict[str, np.ndarray] = {}
    for layer in layers[:-1]:
        matrices = [p for p in groups.get(layer, []) if p.dim() >= 2]
        if not matrices or matrices[0].shape[0] < 2:
            continue
        weight = matrices[0]
        picked = weight[:MAX_ROWS].detach().reshape(min(len(weight), MAX_ROWS), -1)
        rows[layer] = picked.float().cpu().numpy()
    return rows


def symmetry_findings(record: RunRecord, evidence: dict[str, Any]) -> list[Finding]:
    if not record.weights:
        return []
    spreads = {layer: _spread(rows) for layer, rows in record.weights.items()}
    evidence["weight_row_spread"] = {layer: num(v) for layer, v in spreads.items()}
    symmetric = [layer for layer in record.layers
                 if layer in spreads and spreads[layer] < record.thresholds.symmetric_spread]
    if not symmetric:
        return []
    spec = record.spec
    fix = fixes.compose(spec, fixes.random_init(spec)) if spec else {}
    if spec is not None and not fix:  # a constant-like init that is not `zeros`: still random
        fix = fixes.compose(spec, fixes.glorot(spec))
    return [Finding("symmetric", {"weight_row_spread": {
        layer: num(spreads[layer]) for layer in symmetric}}, symmetric, fix)]


def _spread(rows: np.ndarray) -> float:
    """How far the rows are from their mean row, relative to the rows' size: 0 when every unit
    has the same incoming weights (all-zero rows included)."""
    scale = float(np.abs(rows).max()) if rows.size else 0.0
    if scale == 0.0:
        return 0.0
    return float(np.abs(rows - rows.mean(axis=0, keepdims=True)).max()) / scale
