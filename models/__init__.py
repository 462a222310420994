"""The architecture zoo. Importing this package registers every model family."""

from models import (  # noqa: F401  (registration side effects: one family per line)
    autoencoder,
    autoregressive,
    captioner,
    cnn,
    hopfield,
    kernel,
    linear,
    mlp,
    rbm,
    resnet,
    rnn,
    transformer,
)
from models.base import DataShape, LayerwiseModel, ModelConfigError
from models.registry import build_model, family, model_families

__all__ = ["DataShape", "LayerwiseModel", "ModelConfigError", "build_model", "family",
           "model_families"]
