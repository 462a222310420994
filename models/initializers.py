"""Weight initializers by name, applied per layer type.

glorot_normal draws N(0, 2 / (fan_in + fan_out)) (the lecture's variance), glorot_uniform
U(-a, a) with the same variance, he_* the variance 2 / fan_in for ReLU nets, orthogonal an
orthogonal matrix, small_normal N(0, 0.01^2) (the vanishing-gradient demo) and zeros every
weight at 0 (the symmetry demo: hidden units that start equal stay equal). Biases start at zero.

Per layer type:
- Linear, Conv*, Bilinear: the `weight` as one fan-in x fan-out matrix (a kernel counts its
  receptive field in both fans).
- Recurrent layers (nn.RNN, nn.LSTM, nn.GRU) and attention (nn.MultiheadAttention): their
  weights stack one matrix per gate (or per query/key/value) along dim 0; each block is
  initialized on its own, so a gate's fans are (input or hidden size, hidden size), as if it
  were a separate layer.
- Any other module's own parameters of dim >= 2 (the matrices of a custom recurrent cell) as
  one matrix each; its own parameters with bias in their name start at zero.
Left alone: embeddings (lookup tables, not fan-in matrices), normalization gains and other
vectors (PReLU slopes, peephole weights).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

SMALL_NORMAL_STD = 0.01


def _fans(weight: torch.Tensor) -> tuple[int, int]:
    return nn.init._calculate_fan_in_and_fan_out(weight)


def _glorot_normal(w: torch.Tensor) -> None:
    fan_in, fan_out = _fans(w)
    nn.init.normal_(w, 0.0, math.sqrt(2.0 / (fan_in + fan_out)))


def _he_normal(w: torch.Tensor) -> None:
    nn.init.kaiming_normal_(w, nonlinearity="relu")


def _he_uniform(w: torch.Tensor) -> None:
    nn.init.kaiming_uniform_(w, nonlinearity="relu")


_INITIALIZERS: dict[str, Callable[[torch.Tensor], object]] = {
    "glorot_normal": _glorot_normal,
    "glorot_uniform": nn.init.xavier_uniform_,
    "he_normal": _he_normal,
    "he_uniform": _he_uniform,
    "orthogonal": nn.init.orthogonal_,
    "small_normal": lambda w: nn.init.normal_(w, 0.0, SMALL_NORMAL_STD),
    "zeros": nn.init.zeros_,
}

# Layer types left as torch builds them.
_SKIPPED = (nn.Embedding, nn.EmbeddingBag, nn.LayerNorm, nn.GroupNorm,
            nn.modules.batchnorm._NormBase)


def init_names() -> list[str]:
    return [*_INITIALIZERS, "default"]


_KEEP = "_layerwise_keep_init"


def keep_init(param: nn.Parameter) -> nn.Parameter:
    """Mark a parameter that `initialize` must leave alone (a learned positional table, stored
    patterns); returns it, so `self.pos = keep_init(nn.Parameter(...))` reads in one line."""
    setattr(param, _KEEP, True)
    return param


def stacked_blocks(module: nn.Module, param_name: str) -> int:
    """How many matrices `param_name` of `module` stacks along dim 0: one per gate of a
    recurrent layer's weight_ih/weight_hh, three (W_q, W_k, W_v) in attention's in_proj_weight,
    one otherwise."""
    if isinstance(module, nn.RNNBase) and param_name.startswith(("weight_ih", "weight_hh")):
        return {"LSTM": 4, "GRU": 3}.get(module.mode, 1)
    if isinstance(module, nn.MultiheadAttention) and param_name == "in_proj_weight":
        return 3
    return 1


@torch.no_grad()
def initialize(module: nn.Module, name: str) -> None:
    """Initialize every weight matrix below `module` with `name`; biases to zero.

    "default" keeps torch's own initialization.
    """
    if name == "default":
        return
    init = _INITIALIZERS[name]
    for layer in module.modules():
        if isinstance(layer, _SKIPPED):
            continue
        for param_name, param in layer.named_parameters(recurse=False):
            if getattr(param, _KEEP, False):
                continue
            if "bias" in param_name:
                nn.init.zeros_(param)
            elif param.dim() >= 2:
                for block in param.chunk(stacked_blocks(layer, param_name), dim=0):
                    init(block)  # (rows / blocks, cols): one gate's matrix
