"""Gradients through time through the `states_through_time` hook: a vanilla RNN's gradient
decays faster with n - k than an LSTM's, truncation cuts it, and steps are checked."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models import build_model
from models.base import DataShape, LayerwiseModel
from models.objectives import Objective
from services.spec import ExperimentSpec
from tests.utils.specs import mlp_spec
from workers.analysis.bptt import gradient_through_time

T = 20


class TinyRecurrent(LayerwiseModel):
    """A one-layer vanilla RNN or LSTM (torch's own weights, PyTorch's default init; the LSTM
    with forget bias 1) that answers the hook with its states h[1..T], step by step."""

    def __init__(self, cell: str, *, hidden: int = 16, per_step: bool = False,
                 truncate: int | None = None):
        super().__init__()
        self.lstm = cell == "lstm"
        self.rnn = (nn.LSTM if self.lstm else nn.RNN)(1, hidden, batch_first=True)
        if self.lstm:
            with torch.no_grad():
                self.rnn.bias_ih_l0[hidden:2 * hidden] = 1.0  # forget gate
        self.head = nn.Linear(hidden, 2)
        self.per_step, self.truncate = per_step, truncate

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        r = self.rnn
        h = x.new_zeros(len(x), r.hidden_size)  # (B, H)
        c = h
        states = []
        for t in range(x.shape[1]):
            if self.truncate and t and t % self.truncate == 0:
                h, c = h.detach(), c.detach()
            pre = x[:, t] @ r.weight_ih_l0.T + r.bias_ih_l0 + h @ r.weight_hh_l0.T \
                + r.bias_hh_l0  # (B, G*H)
            if self.lstm:
                i, f, g, o = pre.chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            else:
                h = torch.tanh(pre)
            states.append(h)
        out = torch.stack(states, dim=1) if self.per_step else h  # (B, T, H) or (B, H)
        return self.head(out), states

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)[0]

    def states_through_time(self, x: torch.Tensor):
        return self._run(x)


def _task() -> tuple[torch.Tensor, torch.Tensor]:
    """Remember the sign of the first input over T steps."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, T, 1, generator=g)
    return x, (x[:, 0, 0] > 0).long()


def test_a_vanilla_rnn_loses_the_gradient_through_time_faster_than_an_lstm():
    x, y = _task()
    objective = Objective.resolve("classification")
    decay = {}
    for cell in ("vanilla", "lstm"):
        torch.manual_seed(0)
        through = gradient_through_time(TinyRecurrent(cell), objective, x, y)
        assert through is not None and through.steps == [T]
        norms = through.norms[T]
        assert len(norms) == T and all(v > 0 for v in norms)
        decay[cell] = through.decay()
    assert decay["vanilla"]["bptt/first_over_last"] < 1e-2 * decay["lstm"]["bptt/first_over_last"]
    assert decay["vanilla"]["bptt/decay_per_step"] < decay["lstm"]["bptt/decay_per_step"] < 1


def test_many_to_many_steps_and_truncation():
    x, _ = _task()
    y = (x[..., 0] > 0).long()  # (B, T): a target at every step
    objective = Objective.resolve("classification")
    torch.manual_seed(0)
    through = gradient_through_time(TinyRecurrent("lstm", per_step=True), objective, x, y)
    assert through is not None and through.steps == [T // 2, T]
    assert len(through.norms[T // 2]) == T // 2

    truncated = TinyRecurrent("vanilla", per_step=True, truncate=5)
    through = gradient_through_time(truncated, objective, x, y, [12])
    assert through is not None
    # the error at step 12 reaches back to step 11 (the chunk 11..15 starts there), no further
    assert all(v == 0 for v in through.norms[12][:10]) and through.norms[12][10] > 0

    with pytest.raises(ValueError, match="bptt_steps"):
        gradient_through_time(TinyRecurrent("lstm"), objective, x, y[:, 0], [5])


def test_kinds_without_a_state_through_time_answer_none():
    spec = ExperimentSpec.model_validate(mlp_spec())
    mlp = build_model(spec.model, DataShape((3,), 2, "classification"))
    objective = Objective.resolve("classification")
    x = torch.zeros(4, 3)
    assert mlp.states_through_time(x) is None
    assert gradient_through_time(mlp, objective, x, torch.zeros(4, dtype=torch.long)) is None
