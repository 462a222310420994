"""The spec settings beyond the model config that a model kind may honour: each kind lists the
ones its builder acts on (`ModelKind.honours`; the catalog shows them as `supports`), and any
other one switched on is refused at submission instead of being silently ignored."""

from __future__ import annotations

from enum import StrEnum


class Honour(StrEnum):
    DROPOUT = "dropout"  # the builder places dropout layers
    ACTIVITY_REGULARIZATION = "activity_regularization"  # it exposes hidden activations
    INPUT_NOISE = "input_noise"  # it trains on corrupted inputs


# What a kind that learns by gradient descent on ordinary inputs honours: every setting.
GRADIENT_TRAINING = frozenset(Honour)
