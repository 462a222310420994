"""A regularizer as the training engine holds it: its declaration from the contract (the spec
fields that switch it on, the ones it only reads, what it needs) and how its callback is
built."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from models.base import LayerwiseModel
from services.contract.regularizer_kinds import RegularizerKind
from services.contract.spec import ExperimentSpec
from workers.training.callback_base import Callback

# (spec, model, the training split's inputs) -> the callback, or None when the model has
# nothing for it to act on.
Build = Callable[[ExperimentSpec, LayerwiseModel, torch.Tensor], Callback | None]


@dataclass(frozen=True)
class Regularizer:
    """`kind` says when it is on (services.contract.regularizer_kinds, written once for the
    submission checks and the engine); `build` makes its loop callback."""

    kind: RegularizerKind
    build: Build

    @property
    def name(self) -> str:
        return self.kind.name

    def is_on(self, spec: ExperimentSpec) -> bool:
        return self.kind.is_on(spec)
