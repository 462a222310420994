"""The through-time ratio the engine reads for a recurrent net (`RunRecord.through_time_ratio`,
`verdicts.through_time`): ||dJ/dh[1]|| / ||dJ/dh[T]|| on a few training examples, from the
same hook the `bptt_norms` analysis uses. One forward and backward pass of `EXAMPLES`
sequences per judgement: a small share of an epoch. Only the `rnn` kind is measured (a
transformer's attention reaches every step directly: its ratio says nothing of a memory)."""

from __future__ import annotations

from typing import Any

import torch

from workers.diagnostics.analysis.bptt import gradient_through_time

EXAMPLES = 8


class ThroughTimeProbe:
    def __init__(self, model: Any, objective: Any, x: torch.Tensor, y: torch.Tensor):
        self.model, self.objective = model, objective
        self.x, self.y = x[:EXAMPLES], y[:EXAMPLES]

    @classmethod
    def for_run(cls, spec: Any, model: Any, objective: Any, x: torch.Tensor,
                y: torch.Tensor | None) -> ThroughTimeProbe | None:
        """A probe for a recurrent net with targets, else None."""
        if getattr(spec.model, "kind", None) != "rnn" or objective is None or y is None \
                or not len(x):
            return None
        return cls(model, objective, x, y)

    def ratio(self) -> float | None:
        """The ratio now (None when the model gives no states or no gradient reaches h[T]);
        the model's train/eval mode is left as it was."""
        training = self.model.training
        try:
            device = next(self.model.parameters()).device
            through = gradient_through_time(self.model, self.objective, self.x.to(device),
                                            self.y.to(device))
        except (RuntimeError, ValueError):  # a shape the hook cannot follow: not measured
            return None
        finally:
            self.model.train(training)
        if through is None:
            return None
        return through.decay().get("bptt/first_over_last")
