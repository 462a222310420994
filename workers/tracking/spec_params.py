"""A spec as MLflow params: nested fields as dotted keys, e.g. {"optimizer.lr": 0.1}.

Naming what MLflow stores is the tracker's business, so it lives here rather than in the
contract: the spec says what a run is, this says how MLflow's flat param table spells it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

__all__ = ["flatten"]


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested spec (or any part of one) as dotted keys; an empty section keeps its key."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{key}."))
        if not value and prefix:
            out[prefix[:-1]] = "{}"
        return out
    return {prefix[:-1]: value}
