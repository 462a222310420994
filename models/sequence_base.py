"""What the sequence families (rnn, transformer, autoregressive) share: reading the data's
sequence facts, the many-to-one / many-to-many choice, and generation by sampling.

Sequences arrive as (B, T, F) values or (B, T) token ids (float, as every input; the data's
`vocab_size` says they are ids). Dataset facts come in `DataShape.extra`: `vocab_size`,
`vocab` (the characters, to print samples), `sequence_length`, `per_step` (a target at every
step), `next_sample` (y is x shifted by one, so the model can generate) and `prompt`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from models.base import DataShape, LayerwiseModel, ModelConfigError

SAMPLE_STEPS = 200  # characters (or values) generated for each epoch's sample
SEQUENCE_DATASETS = "adding, copy, sine, sentiment, text"


@dataclass(frozen=True)
class SequenceData:
    """The sequence facts a family sizes itself by."""

    tokens: bool  # inputs are token ids (B, T); else values (B, T, F)
    vocab_size: int  # token inputs: the vocabulary; values: 0
    length: int  # T, the data's sequence length
    features: int  # values per step (1 for token ids)
    per_step: bool  # a target at every step (many-to-many)
    out_dim: int  # outputs per step, or per sequence when many-to-one
    task: str
    next_sample: bool  # y[n] = x[n+1]: the model predicts its own next input
    vocab: tuple[str, ...] | None = None
    prompt: tuple[Any, ...] = ()

    @classmethod
    def read(cls, shape: DataShape, kind: str) -> SequenceData:
        """Raises ModelConfigError at `kind` when the data holds no sequences."""
        extra = shape.extra
        tokens = bool(extra.get("vocab_size")) and len(shape.input_shape) == 1
        if not tokens and len(shape.input_shape) != 2:
            what = "tabular rows" if len(shape.input_shape) == 1 else "images"
            raise ModelConfigError(("kind",), (
                f"model kind {kind!r} reads sequences, (T, F) values or T token ids per "
                f"example, but this data holds {what} of shape {tuple(shape.input_shape)}; "
                f"choose a sequence dataset ({SEQUENCE_DATASETS}) or a kind made for this "
                "data, such as mlp"))
        task = shape.task
        per_step = bool(extra.get("per_step", task in ("sequence", "language_model")))
        vocab_size = int(extra.get("vocab_size", 0)) if tokens else 0
        out_dim = vocab_size if task == "language_model" and vocab_size else shape.output_dim
        vocab = extra.get("vocab")
        return cls(tokens=tokens, vocab_size=vocab_size, length=int(shape.input_shape[0]),
                   features=1 if tokens else int(shape.input_shape[1]), per_step=per_step,
                   out_dim=out_dim, task=task,
                   next_sample=bool(extra.get("next_sample", task == "language_model")),
                   vocab=tuple(vocab) if vocab else None,
                   prompt=tuple(extra.get("prompt", ())))

    @property
    def language_model(self) -> bool:
        return self.task == "language_model"


def resolve_many_to_one(mode: str, data: SequenceData) -> bool:
    """True for one output per sequence. Raises ModelConfigError at `mode` on a mismatch."""
    if mode == "auto":
        return not data.per_step
    wanted = "many_to_many" if data.per_step else "many_to_one"
    if mode != wanted:
        targets = "a target at every step" if data.per_step else "one target per sequence"
        raise ModelConfigError(("mode",), f"this data has {targets}, so mode must be "
                                          f"{wanted!r} (or auto), not {mode!r}")
    return mode == "many_to_one"


def require_causal(data: SequenceData, field: str, what: str) -> None:
    """A language model predicts the next token from the past; a net that sees the future
    would learn to copy it. Raises ModelConfigError at `field`."""
    if data.language_model or data.next_sample:
        fix = "true" if field == "causal" else "false"
        raise ModelConfigError((field,), f"{what} sees later steps, but this data asks for the "
                                         "next sample from the past only (a language model "
                                         f"would learn to copy its target); set {field}: {fix}")


class SequenceModel(LayerwiseModel):
    """Base of the sequence families: `forward(x)` -> (B, T, out) or (B, out), and sampling.

    Subclasses set `data`, `many_to_one` and `causal` and define `forward`.
    """

    data: SequenceData
    many_to_one: bool
    causal: bool = True

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Token ids as long (B, T); values unchanged (B, T, F)."""
        return x.long() if self.data.tokens else x

    def last_or_all(self, out: torch.Tensor) -> torch.Tensor:
        """(B, T, H) -> the last step (B, H) for many-to-one; all steps otherwise."""
        return out[:, -1] if self.many_to_one else out

    @property
    def can_generate(self) -> bool:
        return self.data.next_sample and self.causal and not self.many_to_one

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, steps: int, *, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue `prompt` by `steps` samples, each predicted from the last T (the data's
        sequence length). Tokens are drawn from softmax(z / temperature); values follow the
        predicted mean. Returns (B, T0 + steps) ids or (B, T0 + steps, F) values."""
        assert self.can_generate, "only a causal next-sample model can generate"
        was_training = self.training
        self.eval()
        seq = prompt
        for _ in range(steps):
            z = self(seq[:, -self.data.length:])[:, -1]  # (B, V) or (B, F)
            if self.data.tokens:
                probs = torch.softmax(z.float() / temperature, dim=-1).cpu()
                if not torch.isfinite(probs).all():
                    # A diverged model has no distribution to draw from; the loop reports the
                    # divergence, the sample ends where the outputs stopped being numbers.
                    break
                nxt = torch.multinomial(probs, 1, generator=generator).to(seq.device)  # (B, 1)
            else:
                nxt = z.unsqueeze(1).to(seq.dtype)  # (B, 1, F)
            seq = torch.cat([seq, nxt], dim=1)
        self.train(was_training)
        return seq

    def epoch_artifacts(self, epoch: int) -> dict[str, str]:
        """A sample generated from the data's prompt, as text (characters or values)."""
        if not self.can_generate:
            return {}
        device = next(self.parameters()).device
        generator = torch.Generator().manual_seed(epoch)
        if self.data.tokens:
            prompt = torch.tensor([list(self.data.prompt) or [0]], device=device)  # (1, T0)
            ids = self.generate(prompt, SAMPLE_STEPS, generator=generator)[0].tolist()
            vocab = self.data.vocab
            text = "".join(vocab[i] for i in ids) if vocab else " ".join(map(str, ids))
        else:
            values = list(self.data.prompt) or [[0.0] * self.data.features]
            prompt = torch.tensor([values], dtype=torch.float32, device=device)  # (1, T0, F)
            out = self.generate(prompt, SAMPLE_STEPS, generator=generator)[0]
            text = "\n".join(" ".join(f"{v:.4f}" for v in row) for row in out.tolist())
        return {f"samples/epoch_{epoch:03d}.txt": text}
