"""The model registry: one decorator per family, one factory for all.

A family registers its pydantic config class (which carries `kind: Literal[...]`) and a
builder. The spec's `model` field is the discriminated union of every registered config, so a
new family needs one file and one import line in `models/__init__.py`, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from models.base import DataShape, LayerwiseModel
from models.config import ModelConfig


@dataclass(frozen=True)
class ModelFamily:
    kind: str
    config_cls: type[ModelConfig]
    builder: Callable[..., LayerwiseModel]
    description: str
    # Spec settings beyond the model config that this family honours; any other one that is
    # switched on is refused at submission instead of being silently ignored.
    supports: frozenset[str]
    # The model reads a sequence of any length step by step: a dry run may check it on the
    # first few steps (its cost grows with the length, and the API must not pay for that).
    any_length: bool = False


_FAMILIES: dict[str, ModelFamily] = {}


Builder = Callable[..., LayerwiseModel]

# Settings a family may honour (see ModelFamily.supports).
GRADIENT_TRAINING = frozenset({"dropout", "activity_regularization", "input_noise"})


def register_model(
    config_cls: type[ModelConfig], *, description: str,
    supports: frozenset[str] = GRADIENT_TRAINING, any_length: bool = False,
) -> Callable[[Builder], Builder]:
    """Register `builder(config, data_shape, *, dropout) -> LayerwiseModel` for the kind that
    `config_cls` declares in its `kind: Literal[...] = ...` field."""
    kind = config_cls.model_fields["kind"].default
    assert isinstance(kind, str), f"{config_cls.__name__}.kind needs a string default"

    def decorate(builder: Builder) -> Builder:
        if kind in _FAMILIES:
            raise ValueError(f"model kind {kind!r} is registered twice")
        _FAMILIES[kind] = ModelFamily(kind, config_cls, builder, description, supports,
                                      any_length)
        return builder

    return decorate


def model_families() -> list[ModelFamily]:
    return list(_FAMILIES.values())


def family(kind: str) -> ModelFamily:
    try:
        return _FAMILIES[kind]
    except KeyError:
        raise ValueError(f"unknown model kind {kind!r}; known kinds: {sorted(_FAMILIES)}") from None


def build_model(config: ModelConfig, data_shape: DataShape, *, dropout: float = 0.0
                ) -> LayerwiseModel:
    """Build the module a model config describes, sized for `data_shape`.

    Raises:
        ModelConfigError: the config cannot work with this data (names the field and the fix).
    """
    return family(config.kind).builder(config, data_shape, dropout=dropout)
