"""What the registry knows of a regularizer: the spec fields that switch it on, the ones it
only reads as settings, and how its callback is built."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from models.base import LayerwiseModel
from services.contract.spec import ExperimentSpec
from workers.training.callbacks import Callback

# A spec field by its path: ("regularization", "l1").
Loc = tuple[str, ...]
# (spec, model, the training split's inputs) -> the callback, or None when the model has
# nothing for it to act on.
Build = Callable[[ExperimentSpec, LayerwiseModel, torch.Tensor], Callback | None]


@dataclass(frozen=True)
class Regularizer:
    """A regularizer is on when any of its `switches` differs from the field's default (a
    lambda above 0, a cap set, a flag true); `settings` change how it acts and switch nothing
    on by themselves."""

    name: str
    switches: tuple[Loc, ...]
    build: Build
    settings: tuple[Loc, ...] = ()

    def is_on(self, spec: ExperimentSpec) -> bool:
        return any(value_at(spec, loc) != default_at(spec, loc) for loc in self.switches)


def value_at(spec: ExperimentSpec, loc: Loc) -> Any:
    value: Any = spec
    for name in loc:
        value = getattr(value, name)
    return value


def default_at(spec: ExperimentSpec, loc: Loc) -> Any:
    """The default of the field at `loc`, from the class of the section that holds it."""
    section = value_at(spec, loc[:-1])
    return type(section).model_fields[loc[-1]].get_default(call_default_factory=True)
