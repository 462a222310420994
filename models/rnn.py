"""Recurrent nets: vanilla (tanh or ReLU), LSTM and its variants, GRU; stacked, optionally
bidirectional, many-to-one or many-to-many, trained with (optionally truncated) backpropagation
through time.

Layers for the per-layer norms: `embedding` (token inputs), then per recurrent layer its gates
(`rnn.0.forget_gate`, `rnn.0.input_gate`, ..., `rnn.0.cell_input`) or, for the vanilla cell,
`rnn.0.input` and `rnn.0.recurrent`; a bidirectional layer has `rnn.0.fwd.*` and `rnn.0.bwd.*`;
then `head`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from models.base import DataShape, ModelConfigError
from models.initializers import initialize
from models.kinds.rnn import RNNConfig
from models.recurrent_cells import RecurrentCell, make_cell, set_forget_bias
from models.sequence_base import SequenceData, SequenceModel, require_causal, resolve_many_to_one


class Bidirectional(nn.Module):
    """Two cells over one sequence: `fwd` reads it forwards, `bwd` backwards."""

    def __init__(self, make: Callable[[], nn.Module]):
        super().__init__()
        self.fwd = make()
        self.bwd = make()

    def forward(self, x: torch.Tensor, *, truncate: int | None) -> torch.Tensor:
        ahead, _ = self.fwd(x, truncate=truncate)  # (B, T, H)
        behind, _ = self.bwd(x.flip(1), truncate=truncate)  # (B, T, H), reversed time
        return torch.cat([ahead, behind.flip(1)], dim=-1)  # (B, T, 2H)


class RNN(SequenceModel):
    def __init__(self, config: RNNConfig, data: SequenceData, dropout: float = 0.0):
        super().__init__()
        self.data, self.config = data, config
        self.many_to_one = resolve_many_to_one(config.mode, data)
        self.causal = not config.bidirectional
        self.embedding = nn.Embedding(data.vocab_size, config.embed_dim) if data.tokens else None
        n_in = config.embed_dim if data.tokens else data.features
        directions = 2 if config.bidirectional else 1
        self.rnn = nn.ModuleList()
        for layer in range(config.layers):
            width = n_in if layer == 0 else config.hidden * directions

            def make(width: int = width) -> nn.Module:
                return make_cell(config.cell, width, config.hidden, variant=config.variant,
                                 activation=config.activation)

            self.rnn.append(Bidirectional(make) if config.bidirectional else make())
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.head = nn.Linear(config.hidden * directions, data.out_dim)
        initialize(self, config.init)
        set_forget_bias(self, config.forget_bias)
        self._hidden: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x, None)

    def states_through_time(self, x: torch.Tensor
                            ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The last recurrent layer's outputs z[1..T], by its step loop (of a bidirectional
        layer, the forward cell's)."""
        states: list[torch.Tensor] = []
        return self._forward(x, states), states

    def _forward(self, x: torch.Tensor, states: list[torch.Tensor] | None) -> torch.Tensor:
        """`states`: when given, the last layer runs step by step and its outputs land here."""
        seq = self.inputs(x)
        if self.embedding is not None:
            seq = self.embedding(seq)  # (B, T, E)
        hidden = []
        for index, layer in enumerate(self.rnn):
            if index and self.dropout is not None:
                seq = self.dropout(seq)  # between stacked layers, as in torch
            if states is not None and index == len(self.rnn) - 1:
                seq = self._stepped(layer, seq, states)  # (B, T, H) or (B, T, 2H)
            elif isinstance(layer, Bidirectional):
                seq = layer(seq, truncate=self.config.bptt)  # (B, T, 2H)
            else:
                seq, _ = layer(seq, truncate=self.config.bptt)  # (B, T, H)
            hidden.append(seq)
        self._hidden = hidden
        if self.dropout is not None:
            seq = self.dropout(seq)  # and before the head, so one layer honours it too
        if self.many_to_one and self.config.bidirectional:
            half = self.config.hidden
            # the backward cell has read the whole sequence when it reaches step 0
            return self.head(torch.cat([seq[:, -1, :half], seq[:, 0, half:]], dim=-1))
        return self.head(self.last_or_all(seq))  # (B, out) or (B, T, out)

    def hidden_activations(self) -> list[torch.Tensor]:
        return self._hidden

    def _stepped(self, layer: nn.Module, seq: torch.Tensor, states: list[torch.Tensor]
                 ) -> torch.Tensor:
        cell = layer.fwd if isinstance(layer, Bidirectional) else layer
        assert isinstance(cell, RecurrentCell), "every recurrent layer is a RecurrentCell"
        states += cell.step_outputs(seq, truncate=self.config.bptt)
        ahead = torch.stack(states, dim=1)  # (B, T, H)
        if not isinstance(layer, Bidirectional):
            return ahead
        behind, _ = layer.bwd(seq.flip(1), truncate=self.config.bptt)  # reversed time
        return torch.cat([ahead, behind.flip(1)], dim=-1)  # (B, T, 2H)


def _check(config: RNNConfig, data: SequenceData) -> None:
    if config.variant != "standard" and config.cell != "lstm":
        raise ModelConfigError(("variant",), f"variants are the LSTM's; cell {config.cell!r} "
                                             "has none: set cell: lstm or drop variant")
    if config.activation != "tanh" and config.cell != "vanilla":
        raise ModelConfigError(("activation",), f"the {config.cell} cell's activations are "
                                                "fixed by its gates; activation is for cell: "
                                                "vanilla")
    if config.bidirectional:
        require_causal(data, "bidirectional", "a bidirectional net")


def build_rnn(config: RNNConfig, shape: DataShape, dropout: float = 0.0) -> RNN:
    data = SequenceData.read(shape, "rnn")
    _check(config, data)
    return RNN(config, data, dropout)
