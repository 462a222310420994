"""The model kind registry (torch-free): every kind, in the order the spec's `model` union
lists them (the schema, the docs and the catalog follow it). A new kind: one module in
models/kinds/, one line in each list below, and its builder in models/builders.py."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from models.kinds import (
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
from models.kinds.base import ModelKind

MODEL_KINDS: tuple[ModelKind, ...] = (
    rbm.KIND, autoencoder.KIND, autoregressive.KIND, captioner.KIND, cnn.KIND, hopfield.KIND,
    kernel.KIND, linear.KIND, mlp.KIND, resnet.KIND, rnn.KIND, transformer.KIND,
)

# The spec's `model`: one of the kinds' configs, told apart by `kind`. Written out (not built
# from MODEL_KINDS) so that type checkers see each member; a test checks both list the same.
AnyModelConfig = Annotated[
    rbm.RBMConfig | autoencoder.AutoencoderConfig | autoregressive.AutoregressiveConfig
    | captioner.CaptionerConfig | cnn.CNNConfig | hopfield.HopfieldConfig | kernel.KernelConfig
    | linear.LinearConfig | mlp.MLPConfig | resnet.ResNetConfig | rnn.RNNConfig
    | transformer.TransformerConfig,
    Field(discriminator="kind")]

_BY_KIND = {kind.kind: kind for kind in MODEL_KINDS}


def model_kind(kind: str) -> ModelKind:
    try:
        return _BY_KIND[kind]
    except KeyError:
        raise ValueError(f"unknown model kind {kind!r}; known kinds: {sorted(_BY_KIND)}") from None
