"""The `rnn` model kind: its config and its declaration (its builder is in
models/rnn.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from models.config import ModelConfig
from models.kinds.base import ModelKind
from models.kinds.names import CellName, InitName, LSTMVariant, OutputName


class RNNConfig(ModelConfig):
    kind: Literal["rnn"] = "rnn"
    cell: CellName = "lstm"
    hidden: int = Field(32, ge=1, le=65_536, description="state size of each recurrent layer")
    layers: int = Field(1, ge=1, le=64, description="stacked recurrent layers")
    bidirectional: bool = Field(False, description="a second layer reads the sequence "
                                                   "backwards; refused for language models")
    mode: Literal["auto", "many_to_one", "many_to_many"] = Field(
        "auto", description="one output per sequence or one per step; auto follows the data")
    activation: Literal["tanh", "relu"] = Field("tanh", description="vanilla cell only")
    variant: LSTMVariant = Field(
        "standard", description="LSTM only: Greff et al.'s variants; standard has peepholes, "
                                "no_peepholes is the lecture's slide and torch's nn.LSTM")
    bptt: int | None = Field(None, ge=1, description="truncated BPTT: the error reaches back at "
                                                     "most this many steps; null: the whole "
                                                     "sequence")
    embed_dim: int = Field(16, ge=1, le=65_536, description="token inputs: embedding size")
    forget_bias: float = Field(1.0, description="LSTM: initial forget-gate bias")
    output: OutputName = "auto"
    init: InitName = Field("glorot_normal", description="input weights; recurrent weights "
                                                        "start orthogonal")


KIND = ModelKind(
    RNNConfig,
    description=(
        "Recurrent net: vanilla (tanh/ReLU), LSTM and its "
        "variants, or GRU; stacked, bidirectional, many-to-one "
        "or many-to-many, truncated BPTT."),
    any_length=True,
)
