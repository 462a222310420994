"""Gradients through time: ||dJ_n / dh[k]|| for k = n, n-1, ..., 1 (the lecture's "issues with
RNNs" slide). In a vanilla RNN the factor dh[k+1]/dh[k] is diag(g') W, so the norm shrinks (or
grows) geometrically with n - k; an LSTM's cell state carries it further.

J_n is the loss of the output at step n (many-to-many), or the sequence's loss at its last
step (many-to-one). Norms are per example, averaged over the examples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class ThroughTime:
    steps: list[int]  # the n measured from (1-based)
    norms: dict[int, list[float]]  # n -> [||dJ_n/dh[k]|| for k = 1..n]
    examples: int

    def as_dict(self) -> dict[str, Any]:
        return {"examples": self.examples,
                "norms": {str(n): {"k": list(range(1, n + 1)), "norm": values}
                          for n, values in self.norms.items()}}

    def decay(self) -> dict[str, float]:
        """From the last n: `bptt/first_over_last` = ||dJ_n/dh[1]|| / ||dJ_n/dh[n]||, and
        `bptt/decay_per_step`, the geometric factor per step back fitted to the log norms."""
        n = max(self.steps)
        values = self.norms[n]
        out: dict[str, float] = {}
        if values[-1] > 0:
            out["bptt/first_over_last"] = values[0] / values[-1]
        points = [(k, math.log(v)) for k, v in enumerate(reversed(values)) if v > 0]
        if len(points) >= 2:
            mean_k = sum(k for k, _ in points) / len(points)
            mean_v = sum(v for _, v in points) / len(points)
            slope = (sum((k - mean_k) * (v - mean_v) for k, v in points)
                     / sum((k - mean_k) ** 2 for k, _ in points))
            out["bptt/decay_per_step"] = math.exp(slope)
        return out


def default_steps(length: int, per_step: bool) -> list[int]:
    """The last step, and for many-to-many outputs the middle one too."""
    return sorted({length, max(1, length // 2)}) if per_step else [length]


def gradient_through_time(model: Any, objective: Any, x: torch.Tensor, y: torch.Tensor,
                          steps: list[int] | None = None) -> ThroughTime | None:
    """None when the model has no state through time (`states_through_time` returns None).

    Raises:
        ValueError: a requested step is beyond the sequence, or a many-to-one net is asked
            for a step other than the last.
    """
    model.eval()
    found = model.states_through_time(x)
    if found is None:
        return None
    z, states = found
    length = len(states)
    per_step = z.dim() == 3 and z.shape[1] == length  # (B, T, out): a loss at every step
    chosen = sorted(set(steps)) if steps else default_steps(length, per_step)
    for n in chosen:
        if n > length or (not per_step and n != length):
            allowed = f"1..{length}" if per_step else f"only {length}, the last"
            raise ValueError(f"analysis.bptt_steps: step {n} is not an output step of this "
                             f"model (steps: {allowed})")
    norms: dict[int, list[float]] = {}
    for i, n in enumerate(chosen):
        loss = (objective.loss(z[:, n - 1], y[:, n - 1]) if per_step
                else objective.loss(z, y)) * len(x)  # summed: a per-example gradient
        grads = torch.autograd.grad(loss, states[:n], retain_graph=i < len(chosen) - 1,
                                    allow_unused=True)
        norms[n] = [0.0 if g is None else float(g.flatten(1).norm(dim=1).mean())
                    for g in grads]
    return ThroughTime(chosen, norms, len(x))
