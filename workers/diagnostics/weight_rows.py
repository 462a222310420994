"""A sample of each hidden layer's incoming-weight rows, copied from the model to the host for
the symmetry check (`verdicts.symmetry`, which reads plain arrays)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

MAX_ROWS = 64


@torch.no_grad()
def weight_rows(model: Any, layers: list[str]) -> dict[str, np.ndarray]:
    """{hidden layer: (U, F) sampled incoming-weight rows, at most `MAX_ROWS`}; the output
    layer is left out (its units answer different targets)."""
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
