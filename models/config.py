"""The base of every config a user writes (model configs here; the spec's sections and dataset
params build on it): unknown fields refused, and no value the service cannot store or run.

Refused everywhere, with the field's path, including inside free-form fields (`data.params`,
`tags`, a sweep's listed values):
- NaN and infinities (JSON has none, but Python's parser reads `NaN`, and pydantic reads the
  string "NaN" as a float): they fail training later, and PostgreSQL's JSON refuses them;
- NUL characters in strings (PostgreSQL's text and JSON refuse them);
- integers beyond 64 bits, nesting deeper than a spec ever needs, and over-long strings in
  free-form fields (typed fields carry their own bounds).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

SEED_MAX = 2**32 - 1  # numpy's generators take seeds below 2^32; torch takes more
MAX_FREE_TEXT = 1024  # a string inside a free-form field
MAX_FREE_DEPTH = 8  # nesting inside a free-form field
_INT_LIMIT = 2**63


def refuse_unstorable(value: Any, where: str = "", depth: int = 0) -> None:
    """Raise ValueError naming the position below the field of the first value that cannot
    be stored or run (see the module docstring)."""
    here = f" at {where}" if where else ""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"contains a NUL character{here}; remove it")
    elif isinstance(value, bool) or value is None or isinstance(value, BaseModel):
        return
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a finite number{here}; give a finite value")
    elif isinstance(value, int):
        if abs(value) >= _INT_LIMIT:
            raise ValueError(f"{value} does not fit in 64 bits{here}; give a smaller number")
    elif isinstance(value, dict | list | tuple):
        if depth >= MAX_FREE_DEPTH:
            raise ValueError(f"is nested more than {MAX_FREE_DEPTH} levels deep{here}")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str):
                _refuse_free_text(key, f"{where}[{key[:40]!r}]")
            refuse_unstorable(item, f"{where}[{key!r}]" if isinstance(key, int)
                              else f"{where}.{key}".lstrip("."), depth + 1)
            if isinstance(item, str):
                _refuse_free_text(item, f"{where}.{key}".lstrip("."))


def _refuse_free_text(text: str, where: str) -> None:
    if "\x00" in text:
        raise ValueError(f"contains a NUL character at {where}; remove it")
    if len(text) > MAX_FREE_TEXT:
        raise ValueError(f"has a string of {len(text)} characters at {where}; the limit is "
                         f"{MAX_FREE_TEXT}")


class StrictConfig(BaseModel):
    """Unknown fields refused; NaN, infinities and NUL characters refused in every field."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        refuse_unstorable(value)
        return value


class ModelConfig(StrictConfig):
    """The base of every model kind's config: the spec's `model` section. Each family narrows
    `kind` to its own `Literal[...]` with that name as the default; the registry reads it."""

    kind: str
