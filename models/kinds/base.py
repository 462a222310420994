"""A model kind's declaration: what the catalog, the spec and the submission checks know of a
kind before anything is built."""

from __future__ import annotations

from dataclasses import dataclass, field

from models.config import ModelConfig
from models.kinds.honours import GRADIENT_TRAINING, Honour


@dataclass(frozen=True)
class ModelKind:
    """Attributes:
        config_cls: the kind's config; its `kind: Literal[...]` default names the kind.
        honours: the spec settings beyond the model config its builder acts on; any other one
            switched on is refused at submission (the catalog shows them as `supports`).
        any_length: the model reads a sequence of any length step by step, so a dry run may
            check it on the first few steps (its cost grows with the length, and the API must
            not pay for that).
    """

    config_cls: type[ModelConfig]
    description: str
    honours: frozenset[Honour] = GRADIENT_TRAINING
    any_length: bool = False
    kind: str = field(init=False)

    def __post_init__(self) -> None:
        kind = self.config_cls.model_fields["kind"].default
        assert isinstance(kind, str), f"{self.config_cls.__name__}.kind needs a string default"
        object.__setattr__(self, "kind", kind)
