"""The torch builder of every model kind (models/registry.py declares the kinds)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from models import (
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
from models.base import DataShape, LayerwiseModel
from models.config import ModelConfig

# builder(config, data_shape, *, dropout) -> the module; a test checks every kind has one.
Builder = Callable[..., LayerwiseModel]
BUILDERS: dict[str, Builder] = {
    "rbm": rbm.build_rbm,
    "autoencoder": autoencoder.build_autoencoder,
    "autoregressive": autoregressive.build_autoregressive,
    "captioner": captioner.build_captioner,
    "cnn": cnn.build_cnn,
    "hopfield": hopfield.build_hopfield,
    "kernel": kernel.build_kernel,
    "linear": linear.build_linear,
    "mlp": mlp.build_mlp,
    "resnet": resnet.build_resnet,
    "rnn": rnn.build_rnn,
    "transformer": transformer.build_transformer,
}


def build_model(config: ModelConfig, data_shape: DataShape, *, dropout: float = 0.0
                ) -> LayerwiseModel:
    """Build the module a model config describes, sized for `data_shape`.

    Raises:
        ModelConfigError: the config cannot work with this data (names the field and the fix).
    """
    builder: Any = BUILDERS[config.kind]
    return builder(config, data_shape, dropout=dropout)
