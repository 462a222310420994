"""Every regularizer the loop applies, declared without its engine: the spec fields that switch
it on, the ones it only reads, and what the model (or the data) must have for it to act.

Written once, read by the submission checks (services/contract/applicability.py and
workers/submission/applicability_checks.py) and by the training engine, which registers one
callback builder per kind by name. The order is the order the callbacks run in, and it is
part of the numerics (see workers/training/regularizers/registry.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from models.kinds.honours import Honour

# A spec field by its path: ("regularization", "l1").
Loc = tuple[str, ...]


class Need(StrEnum):
    """What a regularizer needs to act on, checked in the dry run (on the built model, or on
    the training inputs)."""

    PENALIZED_WEIGHTS = "penalized_weights"  # trainable weights (biases when asked)
    HIDDEN_ACTIVATIONS = "hidden_activations"  # `hidden_activations()` returns tensors
    CONSTRAINED_WEIGHTS = "constrained_weights"  # dense, conv, recurrent or attention weights
    BINARY_INPUTS = "binary_inputs"  # every input value in {0, 1} or in {-1, 1}
    REAL_INPUTS = "real_inputs"  # float inputs that are not token ids


@dataclass(frozen=True)
class RegularizerKind:
    """A regularizer is on when any of its `switches` differs from the field's default (a
    lambda above 0, a cap set, a flag true); `settings` change how it acts and switch nothing
    on by themselves.

    Attributes:
        needs: what the built model or the data must have, or the regularizer has nothing to
            act on and the spec is refused (checked in the dry run).
        honoured_as: the setting the model kind must list in its `honours` (checked at
            submission, before anything is built); None when any kind honours it.
        gradient_only: it acts through backward and the optimizer, so a kind that learns
            otherwise (Hebbian storage, contrastive divergence) gives it nothing to act on.
    """

    name: str
    switches: tuple[Loc, ...]
    settings: tuple[Loc, ...] = ()
    needs: frozenset[Need] = frozenset()
    honoured_as: Honour | None = None
    gradient_only: bool = False

    def is_on(self, spec: BaseModel) -> bool:
        return any(value_at(spec, loc) != default_at(spec, loc) for loc in self.switches)

    def switched_on(self, spec: BaseModel) -> list[Loc]:
        """The switches of this regularizer that `spec` sets away from their defaults."""
        return [loc for loc in self.switches if value_at(spec, loc) != default_at(spec, loc)]


def value_at(spec: BaseModel, loc: Loc) -> Any:
    value: Any = spec
    for name in loc:
        value = getattr(value, name)
    return value


def default_at(spec: BaseModel, loc: Loc) -> Any:
    """The default of the field at `loc`, from the class of the section that holds it."""
    section = value_at(spec, loc[:-1])
    return type(section).model_fields[loc[-1]].get_default(call_default_factory=True)


_STOPPING = ("regularization", "early_stopping")

REGULARIZER_KINDS: tuple[RegularizerKind, ...] = (
    RegularizerKind("early_stopping", switches=(_STOPPING + ("patience",),),
                    settings=tuple(_STOPPING + (name,)
                                   for name in ("monitor", "mode", "min_delta", "restore_best"))),
    RegularizerKind("bit_flip", switches=(("regularization", "input_flip_prob"),),
                    needs=frozenset({Need.BINARY_INPUTS}), honoured_as=Honour.INPUT_NOISE),
    RegularizerKind("input_noise", switches=(("regularization", "input_noise_std"),),
                    needs=frozenset({Need.REAL_INPUTS}), honoured_as=Honour.INPUT_NOISE),
    RegularizerKind("weight_penalty", switches=(("regularization", "l1"), ("regularization", "l2")),
                    settings=(("regularization", "penalize_biases"),),
                    needs=frozenset({Need.PENALIZED_WEIGHTS}), gradient_only=True),
    RegularizerKind("activity_penalty",
                    switches=(("regularization", "activity_l1"), ("regularization", "activity_l2")),
                    needs=frozenset({Need.HIDDEN_ACTIVATIONS}),
                    honoured_as=Honour.ACTIVITY_REGULARIZATION, gradient_only=True),
    RegularizerKind("gradient_clipping",
                    switches=(("training", "grad_clip_value"), ("training", "grad_clip_norm")),
                    gradient_only=True),
    RegularizerKind("weight_constraints",
                    switches=(("regularization", "max_norm"), ("regularization", "unit_norm"),
                              ("regularization", "non_neg")),
                    needs=frozenset({Need.CONSTRAINED_WEIGHTS}), gradient_only=True),
)

_BY_NAME = {kind.name: kind for kind in REGULARIZER_KINDS}


def regularizer_kind(name: str) -> RegularizerKind:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown regularizer {name!r}; known: {sorted(_BY_NAME)}") from None
