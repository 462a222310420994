"""A decoder-only Transformer in the style of nanoGPT: the lecture's explicit context.

Each step's context vector is an attention-weighted sum over the last N steps,
x^c[n] = sum_{i=n-N}^{n} a_ni W_v x[i] with a_ni = softmax_N(q^T k_i / sqrt(M)), computed by
several heads at once, added back to x[n] (a residual) and processed further by a feed-forward
block. Pre-norm blocks (layer norm before attention and feed-forward), learned or sinusoidal
positions. `context` is the lecture's window N; without it a step attends to every earlier step.

Layers: `embedding` (tokens) or `input` (values), `position`, then per block `blocks.0.norm1`,
`blocks.0.attention.qkv`, `blocks.0.attention.proj`, `blocks.0.norm2`,
`blocks.0.feed_forward.fc`, `blocks.0.feed_forward.proj`; `norm`, `head`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.base import DataShape, ModelConfigError
from models.initializers import initialize
from models.kinds.transformer import TransformerConfig
from models.sequence_base import SequenceData, SequenceModel, require_causal

EMBEDDING_STD = 0.02  # nanoGPT's initial scale for token and position embeddings
MAX_STEPS = 4096  # the (T, T) attention mask and scores grow with T squared


class SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)  # W_q, W_k, W_v of every head at once
        self.proj = nn.Linear(width, width)
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        batch, steps, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)  # (B, T, M) each
        q, k, v = (t.view(batch, steps, self.heads, -1).transpose(1, 2)
                   for t in (q, k, v))  # (B, heads, T, M/heads)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(batch, steps, width)  # (B, T, M)
        return self.resid_dropout(self.proj(y))


class FeedForward(nn.Module):
    def __init__(self, width: int, mult: int, dropout: float):
        super().__init__()
        self.fc = nn.Linear(width, mult * width)
        self.proj = nn.Linear(mult * width, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))  # (B, T, M)


class Block(nn.Module):
    def __init__(self, config: TransformerConfig, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.width)
        self.attention = SelfAttention(config.width, config.heads, dropout)
        self.norm2 = nn.LayerNorm(config.width)
        self.feed_forward = FeedForward(config.width, config.ff_mult, dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), allowed)  # context added to x[n]
        return x + self.feed_forward(self.norm2(x))  # (B, T, M)


def sinusoidal(steps: int, width: int) -> torch.Tensor:
    """Fixed sine/cosine positions (Vaswani et al., 2017): (T, M)."""
    position = torch.arange(steps, dtype=torch.float32).unsqueeze(1)  # (T, 1)
    rate = torch.exp(torch.arange(0, width, 2, dtype=torch.float32)
                     * (-math.log(10000.0) / width))  # (ceil(M/2),)
    table = torch.zeros(steps, width)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate[: width // 2])
    return table


def attention_mask(steps: int, window: int, causal: bool) -> torch.Tensor:
    """(T, T) bool, True where step n may attend to step i: |n - i| < N, and i <= n if causal."""
    n = torch.arange(steps).unsqueeze(1)
    i = torch.arange(steps).unsqueeze(0)
    allowed = (n - i).abs() < window
    return allowed & (i <= n) if causal else allowed


class Transformer(SequenceModel):
    position_table: torch.Tensor  # buffers: (T, M) sinusoids, (T, T) who may attend to whom
    allowed: torch.Tensor

    def __init__(self, config: TransformerConfig, data: SequenceData, dropout: float = 0.0):
        super().__init__()
        self.data, self.config = data, config
        self.many_to_one = not data.per_step
        self.causal = config.causal
        width, steps = config.width, data.length
        if data.tokens:
            self.embedding: nn.Module = nn.Embedding(data.vocab_size, width)
        else:
            self.input = nn.Linear(data.features, width)
        if config.positional == "learned":
            self.position = nn.Embedding(steps, width)
        else:
            self.register_buffer("position_table", sinusoidal(steps, width), persistent=False)
        self.embed_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(config, dropout) for _ in range(config.layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, data.out_dim)
        self.register_buffer("allowed", attention_mask(steps, config.context or steps,
                                                       config.causal), persistent=False)
        initialize(self, config.init)
        # Fixed sinusoids have amplitude 1: token vectors must start as large or the positions
        # drown them (Vaswani et al. scale embeddings by sqrt(M) for the same reason).
        std = EMBEDDING_STD if config.positional == "learned" else 1.0
        for module in self.modules():
            if isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, 0.0, std)
        self._hidden: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x, None)

    def states_through_time(self, x: torch.Tensor
                            ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """h[k] (B, M), step k's embedding plus position, that the attention blocks read."""
        states: list[torch.Tensor] = []
        return self._forward(x, states), states

    def _forward(self, x: torch.Tensor, states: list[torch.Tensor] | None) -> torch.Tensor:
        x = self.inputs(x)
        steps = x.shape[1]
        assert steps <= self.data.length, f"at most {self.data.length} steps, got {steps}"
        h = self.embedding(x) if self.data.tokens else self.input(x)  # (B, T, M)
        if self.config.positional == "learned":
            h = h + self.position(torch.arange(steps, device=h.device))  # (T, M) broadcast
        else:
            h = h + self.position_table[:steps]
        h = self.embed_dropout(h)
        if states is not None:  # every step its own tensor, the sequence rebuilt from them
            states += h.unbind(dim=1)  # T x (B, M)
            h = torch.stack(states, dim=1)  # (B, T, M)
        allowed = self.allowed[:steps, :steps]
        hidden = []
        for block in self.blocks:
            h = block(h, allowed)  # (B, T, M)
            hidden.append(h)
        self._hidden = hidden
        return self.head(self.norm(self.last_or_all(h)))  # (B, out) or (B, T, out)

    def hidden_activations(self) -> list[torch.Tensor]:
        return self._hidden


def _check(config: TransformerConfig, data: SequenceData) -> None:
    if data.length > MAX_STEPS:
        raise ModelConfigError(("kind",), f"attention over T={data.length} steps needs a T x T "
                                          f"matrix; a transformer here takes at most "
                                          f"{MAX_STEPS} steps: shorten the data's sequences "
                                          "(data.params.length) or use kind rnn")
    if config.width % config.heads:
        fits = [h for h in range(1, min(config.width, 16) + 1) if config.width % h == 0]
        raise ModelConfigError(("heads",), f"width {config.width} does not split into "
                                           f"{config.heads} heads of equal size; choose heads "
                                           f"in {fits} or a width divisible by {config.heads}")
    if config.context is not None and config.context > data.length:
        raise ModelConfigError(("context",), f"the context window N={config.context} is longer "
                                             f"than the data's sequences (T={data.length}); "
                                             f"set context <= {data.length} or null")
    if not config.causal:
        require_causal(data, "causal", "a non-causal transformer")


def build_transformer(config: TransformerConfig, shape: DataShape, dropout: float = 0.0
                      ) -> Transformer:
    data = SequenceData.read(shape, "transformer")
    _check(config, data)
    return Transformer(config, data, dropout)
