"""Autoregressive feed-forward nets: causal, dilated 1-D convolutions (WaveNet-like) that
predict the next sample from the past k, p(x_n | x_{n-k}, ..., x_{n-1}).

Layer l convolves with kernel size K at dilation d_l = growth^l and pads only on the left, so
step n sees steps n - (K-1) d_l ... n and never the future. The past k the net sees is its
receptive field, 1 + (K-1) * sum_l d_l. Discrete data (token ids: text, or `sine` with
`levels`) gets a softmax over the next value, which generation samples from; continuous data
gets the predicted mean.

Layers: `embedding` (tokens), `input` (a 1x1 convolution to the channel width), `layers.0`,
`layers.1`, ... (the dilated convolutions), `head` (a 1x1 convolution to the outputs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.activations import make_activation
from models.base import DataShape
from models.initializers import initialize
from models.kinds.autoregressive import AutoregressiveConfig
from models.sequence_base import SequenceData, SequenceModel, resolve_many_to_one


class CausalConv1d(nn.Conv1d):
    """A convolution that pads only the past: output step n depends on inputs <= n."""

    def __init__(self, channels: int, kernel_size: int, dilation: int):
        super().__init__(channels, channels, kernel_size, dilation=dilation)
        self.left = (kernel_size - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.left, 0)))  # (B, C, T)


class Autoregressive(SequenceModel):
    def __init__(self, config: AutoregressiveConfig, data: SequenceData, dropout: float = 0.0):
        super().__init__()
        self.data, self.config = data, config
        self.many_to_one = resolve_many_to_one(config.mode, data)
        self.embedding = nn.Embedding(data.vocab_size, config.embed_dim) if data.tokens else None
        n_in = config.embed_dim if data.tokens else data.features
        self.input = nn.Conv1d(n_in, config.channels, 1)
        self.layers = nn.ModuleList(
            CausalConv1d(config.channels, config.kernel_size, config.dilation_growth ** layer)
            for layer in range(config.layers))
        self.activation = make_activation(config.activation)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.head = nn.Conv1d(config.channels, data.out_dim, 1)
        initialize(self, config.init)
        self._hidden: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x, None)

    def states_through_time(self, x: torch.Tensor
                            ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """h[k] (B, C), the input projection at step k that the dilated stack reads: the error
        at step n reaches back only as far as the receptive field."""
        states: list[torch.Tensor] = []
        return self._forward(x, states), states

    def _forward(self, x: torch.Tensor, states: list[torch.Tensor] | None) -> torch.Tensor:
        seq = self.inputs(x)
        if self.embedding is not None:
            seq = self.embedding(seq)  # (B, T, E)
        h = self.input(seq.transpose(1, 2))  # (B, C, T)
        if states is not None:  # every step its own tensor, the stack rebuilt from them
            states += h.unbind(dim=2)  # T x (B, C)
            h = torch.stack(states, dim=2)  # (B, C, T)
        hidden = []
        for layer in self.layers:
            out = self.activation(layer(h))  # (B, C, T)
            if self.dropout is not None:
                out = self.dropout(out)
            h = h + out if self.config.residual else out
            hidden.append(h)
        self._hidden = hidden
        return self.last_or_all(self.head(h).transpose(1, 2))  # (B, T, out) or (B, out)

    def hidden_activations(self) -> list[torch.Tensor]:
        return self._hidden


def build_autoregressive(config: AutoregressiveConfig, shape: DataShape, dropout: float = 0.0
                         ) -> Autoregressive:
    return Autoregressive(config, SequenceData.read(shape, "autoregressive"), dropout)
