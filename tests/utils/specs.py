"""Spec factories: small, fast experiments with overrides by nested dict."""

from __future__ import annotations

import copy
from typing import Any


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def mlp_spec(**overrides: Any) -> dict[str, Any]:
    base = {"name": "test-mlp", "project": "tests",
            "data": {"name": "digits"},
            "model": {"kind": "mlp", "hidden": [32, 32]},
            "optimizer": {"name": "adam", "lr": 0.003},
            "training": {"epochs": 2, "batch_size": 64}}
    return merge(base, overrides)
