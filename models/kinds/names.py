"""The names a model config may choose from (activation, initializer, output, loss, cell):
torch-free, so the spec and its schema are built without torch. The torch modules that act on
each name (models/activations.py, initializers.py, objectives.py, recurrent_cells.py) are
checked against these lists by tests."""

from __future__ import annotations

from typing import Literal

ActivationName = Literal[
    "identity", "step", "sigmoid", "tanh", "arctan", "relu", "prelu", "elu", "softplus"
]
InitName = Literal[
    "glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "orthogonal", "small_normal",
    "zeros", "default",
]
OutputName = Literal["auto", "linear", "sigmoid", "softmax", "hardlimit"]
LossName = Literal["auto", "mse", "cross_entropy", "bce", "perceptron"]
CellName = Literal["vanilla", "lstm", "gru"]
LSTMVariant = Literal[
    "standard", "no_input_gate", "no_forget_gate", "no_output_gate", "no_input_activation",
    "no_output_activation", "no_peepholes", "coupled_input_forget", "full_gate_recurrence",
]
SkipName = Literal["identity", "weighted", "none"]  # resnet
UpdateName = Literal["async", "sync"]  # hopfield
