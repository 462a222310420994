"""The state of every random generator a training draws from (Python, NumPy, torch and the
loop's shuffle), so a resumed run draws what it would have drawn had it not stopped."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    state = np.random.get_state(legacy=True)  # the default, spelled out for the overloads
    assert isinstance(state, tuple), "the global RandomState is an MT19937: a legacy tuple"
    kind, keys, pos, has_gauss, cached = state
    return {"python": list(random.getstate()[1]), "python_version": random.getstate()[0],
            "python_gauss": random.getstate()[2],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "torch": torch.get_rng_state(), "shuffle": generator.get_state()}


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    generator.set_state(state["shuffle"])
