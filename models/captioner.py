"""Image captioning, one-to-many: a CNN encodes the image into the decoder's first state, and
a recurrent decoder emits the caption one token at a time, each step fed the previous token.

Training feeds the true previous token (teacher forcing, in `training_step`); `forward(x)`
decodes greedily from the model's own previous choice, so validation scores what the model
really writes. Targets are token ids per step (B, L) ending in an end token and padding.

Layers: `encoder.convs.0`, `encoder.convs.1`, ..., `encoder.project`, `embedding`, the
decoder's gates (`decoder.update_gate`, ...), `head`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.base import DataShape, LayerwiseModel, ModelConfigError
from models.initializers import initialize
from models.kinds.captioner import CaptionerConfig
from models.recurrent_cells import LSTMCell, make_cell, set_forget_bias


class Encoder(nn.Module):
    def __init__(self, in_channels: int, size: tuple[int, int], channels: list[int],
                 hidden: int):
        super().__init__()
        widths = [in_channels, *channels]
        self.convs = nn.ModuleList(nn.Conv2d(widths[i], widths[i + 1], 3, padding=1)
                                   for i in range(len(channels)))
        height, width = size
        self.pools = []
        for _ in channels:
            pool = min(height, width) >= 2
            self.pools.append(pool)
            height, width = (height // 2, width // 2) if pool else (height, width)
        self.project = nn.Linear(channels[-1] * height * width, hidden)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h = image  # (B, C, H, W)
        for conv, pool in zip(self.convs, self.pools, strict=True):
            h = F.relu(conv(h))
            h = F.max_pool2d(h, 2) if pool else h
        return torch.tanh(self.project(h.flatten(1)))  # (B, hidden): the decoder's z[0]


class Captioner(LayerwiseModel):
    def __init__(self, config: CaptionerConfig, shape: DataShape, dropout: float = 0.0):
        super().__init__()
        channels, height, width = shape.input_shape
        self.length = int(shape.extra["sequence_length"])
        self.vocab_size = int(shape.extra["vocab_size"])
        self.vocab = tuple(shape.extra.get("vocab", ()))
        self.end = shape.extra.get("end_token")
        self.start = self.vocab_size  # an input-only token that starts every caption
        self.encoder = Encoder(channels, (height, width), config.channels, config.hidden)
        self.embedding = nn.Embedding(self.vocab_size + 1, config.embed_dim)
        self.decoder = make_cell(config.cell, config.embed_dim, config.hidden,
                                 variant="no_peepholes")
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.head = nn.Linear(config.hidden, self.vocab_size)
        initialize(self, config.init)
        set_forget_bias(self, 1.0)
        self._hidden: list[torch.Tensor] = []

    def _first_state(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        z0 = self.encoder(image)  # (B, H)
        state = list(self.decoder.initial_state(image.shape[0], z0))
        state[0] = z0
        if isinstance(self.decoder, LSTMCell):
            state[1] = z0  # the cell state starts from the image too
        return tuple(state)

    def _logits(self, out: torch.Tensor) -> torch.Tensor:
        if self.dropout is not None:
            out = self.dropout(out)
        return self.head(out)  # (B, T, V)

    def training_step(self, x: torch.Tensor, y: torch.Tensor, objective: Any
                      ) -> dict[str, torch.Tensor]:
        """Teacher forcing: step n is fed the true token n-1."""
        start = torch.full_like(y[:, :1], self.start)
        previous = torch.cat([start, y[:, :-1]], dim=1)  # (B, L)
        out, _ = self.decoder(self.embedding(previous), self._first_state(x))  # (B, L, H)
        self._hidden = [out]
        z = self._logits(out)
        return {"loss": objective.loss(z, y), "output": z}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Greedy decoding: (B, C, H, W) -> logits (B, L, V), each step fed its own choice."""
        state = self._first_state(x)
        token = torch.full((x.shape[0], 1), self.start, dtype=torch.long, device=x.device)
        steps = []
        for _ in range(self.length):
            out, state = self.decoder(self.embedding(token), state)  # (B, 1, H)
            logits = self._logits(out)  # (B, 1, V)
            steps.append(logits)
            token = logits.argmax(dim=-1)  # (B, 1)
        return torch.cat(steps, dim=1)  # (B, L, V)

    @torch.no_grad()
    def caption(self, x: torch.Tensor) -> list[str]:
        """The greedy captions as text, cut at the end token."""
        words = []
        for ids in self(x).argmax(dim=-1).tolist():
            ids = ids[:ids.index(self.end)] if self.end in ids else ids
            words.append("".join(self.vocab[i] if self.vocab else f"<{i}>" for i in ids))
        return words

    def hidden_activations(self) -> list[torch.Tensor]:
        return self._hidden


def build_captioner(config: CaptionerConfig, shape: DataShape, dropout: float = 0.0
                    ) -> Captioner:
    if len(shape.input_shape) != 3:
        raise ModelConfigError(("kind",), f"a captioner reads images (C, H, W), but this data "
                                          f"holds examples of shape {tuple(shape.input_shape)};"
                                          " use digit_captions (or a captioning .npz)")
    if not (shape.extra.get("vocab_size") and shape.extra.get("per_step")):
        raise ModelConfigError(("kind",), "a captioner emits token sequences, but this data "
                                          "has no caption per image (per-step token targets "
                                          "and a vocab_size); use digit_captions")
    return Captioner(config, shape, dropout)
