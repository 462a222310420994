"""The architecture zoo. Importing this package registers every model family."""

from models import (  # noqa: F401  (registration side effects)
    autoregressive,
    captioner,
    linear,
    mlp,
    rnn,
    transformer,
)
from models.base import DataShape, LayerwiseModel, ModelConfigError
from models.registry import build_model, family, model_families

__all__ = ["DataShape", "LayerwiseModel", "ModelConfigError", "build_model", "family",
           "model_families"]
