"""The lecture's recurrent cells: vanilla (tanh or ReLU), LSTM with the variants of "LSTM: A
Search Space Odyssey" (Greff et al., 2015), and GRU.

Notation follows the lecture: x[n] is the input, z[n] the output (what the next layer and the
next step see) and, in the LSTM, h[n] the cell state (torch calls them h and c):

    LSTM  f = s(Wx^f x + Wz^f z[n-1]),  i = s(...),  o = s(...),  ~h = tanh(Wx x + Wz z[n-1])
          h[n] = h[n-1] * f + ~h * i,   z[n] = tanh(h[n]) * o
    GRU   r = s(Wx^r x + Wz^r z[n-1]),  u = s(...),  ~h = tanh(Wx x + (Wz z[n-1]) * r)
          z[n] = z[n-1] * (1 - u) + ~h * u
    RNN   z[n] = g(Wzz z[n-1] + Wxz x[n])

Every gate is its own module that owns its input weights, recurrent weights, bias and
peephole, so each gate is its own layer in the per-layer norms (`rnn.0.forget_gate`); the
vanilla cell's layers are its input and recurrent weights (`rnn.0.input`, `rnn.0.recurrent`).

A cell runs a whole sequence. Where a cell computes the same function as torch's fused
nn.RNN / nn.LSTM / nn.GRU (vanilla, GRU, LSTM without peepholes), it hands its own weights to
the fused kernel (faster on a CPU, BENCHMARKS.md); the step-by-step loop below is the definition,
and a test shows both agree.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.func import functional_call

from models.kinds.names import CellName, LSTMVariant

State = tuple[torch.Tensor, ...]


class Gate(nn.Linear):
    """One gate (or the cell input): pre-activation Wx x[n] + b + Wz z[n-1], plus a peephole
    p * h from the cell state and, with full gate recurrence, R g[n-1] from the previous gate
    values. nn.Linear holds Wx and b, so they are initialized like any dense layer's."""

    def __init__(self, n_in: int, hidden: int, *, peephole: bool = False, gate_inputs: int = 0):
        super().__init__(n_in, hidden)
        self.recurrent_weight = nn.Parameter(torch.empty(hidden, hidden))
        self.peephole = nn.Parameter(torch.zeros(hidden)) if peephole else None
        self.gate_weight = (nn.Parameter(torch.zeros(hidden, gate_inputs)) if gate_inputs
                            else None)
        nn.init.orthogonal_(self.recurrent_weight)


class Recurrent(nn.Module):
    """The recurrent weights Wzz of a vanilla cell, a layer of their own."""

    def __init__(self, hidden: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(hidden, hidden))
        nn.init.orthogonal_(self.weight)


class RecurrentCell(nn.Module):
    """Runs a sequence through one recurrent layer.

    Subclasses define `initial_state`, `step` (one time step from the input projection) and
    `_weights`; they may offer `_fused_weights` when torch's fused module computes
    the same function.
    """

    hidden: int
    fused_kind: str | None = None  # "RNN_TANH" | "RNN_RELU" | "LSTM" | "GRU" when fusable

    def __init__(self, n_in: int, hidden: int):
        super().__init__()
        self.n_in, self.hidden = n_in, hidden
        self.use_fused = True  # tests switch this off to compare with the step loop

    def forward(self, x: torch.Tensor, state: State | None = None, *,
                truncate: int | None = None) -> tuple[torch.Tensor, State]:
        """x (B, T, n_in) -> outputs z (B, T, H) and the last state.

        `truncate` = K is truncated backpropagation through time: the state is detached every
        K steps, so the error at step n reaches back at most K steps.
        """
        batch, steps, _ = x.shape
        state = state if state is not None else self.initial_state(batch, x)
        chunk = truncate or steps
        outputs = []
        for start in range(0, steps, chunk):
            if start:
                state = tuple(s.detach() for s in state)
            out, state = self._run(x[:, start:start + chunk], state)
            outputs.append(out)
        return torch.cat(outputs, dim=1), state  # (B, T, H)

    def step_outputs(self, x: torch.Tensor, *, truncate: int | None = None
                     ) -> list[torch.Tensor]:
        """The outputs z[1], ..., z[T] (B, H) of `forward`, by the step loop (never the fused
        kernel): each is a tensor the later steps are computed from, so the gradient through
        time can be taken with respect to it. Truncation detaches the state as `forward`
        does."""
        state = self.initial_state(x.shape[0], x)
        weight, bias, recurrent = self._weights()
        projected = x @ weight.T + bias  # (B, T, G*H)
        outputs = []
        for n in range(x.shape[1]):
            if truncate and n and n % truncate == 0:
                state = tuple(s.detach() for s in state)
            z, state = self.step(projected[:, n], state, recurrent)  # (B, H)
            outputs.append(z)
        return outputs

    def _run(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if self.use_fused and self.fused_kind is not None:
            return self._run_fused(x, state)
        weight, bias, recurrent = self._weights()
        projected = x @ weight.T + bias  # (B, T, G*H): every gate's Wx x + b at once
        outputs = []
        for n in range(x.shape[1]):
            z, state = self.step(projected[:, n], state, recurrent)
            outputs.append(z)
        return torch.stack(outputs, dim=1), state  # (B, T, H)

    def _run_fused(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        module = _fused_module(self.fused_kind, self.n_in, self.hidden)
        w_ih, w_hh, b_ih = self._fused_weights()
        params = {"weight_ih_l0": w_ih, "weight_hh_l0": w_hh, "bias_ih_l0": b_ih,
                  "bias_hh_l0": torch.zeros_like(b_ih)}
        if self.fused_kind == "LSTM":
            hx: object = (state[0].unsqueeze(0), state[1].unsqueeze(0))  # (1, B, H) each
            out, (z, h) = functional_call(module, params, (x, hx))
            return out, (z[0], h[0], state[2])
        out, z = functional_call(module, params, (x, state[0].unsqueeze(0)))
        return out, (z[0],)

    def initial_state(self, batch: int, like: torch.Tensor) -> State:
        return (like.new_zeros(batch, self.hidden),)

    def step(self, projected: torch.Tensor, state: State, recurrent: torch.Tensor
             ) -> tuple[torch.Tensor, State]:
        """One time step: `projected` (B, G*H) is Wx x[n] + b of every gate, `recurrent`
        (G*H, H) the gates' Wz stacked in the same order."""
        raise AssertionError(f"{type(self).__name__} must define step()")

    def _weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Wx, b, Wz) of every gate, stacked: ((G*H, n_in), (G*H,), (G*H, H))."""
        raise AssertionError(f"{type(self).__name__} must define _weights()")

    def _fused_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise AssertionError(f"{type(self).__name__} has no fused equivalent")


_FUSED: dict[tuple[str, int, int], nn.Module] = {}


def _fused_module(kind: str | None, n_in: int, hidden: int) -> nn.Module:
    """A parameterless (meta) torch module: `functional_call` runs it on our weights."""
    key = (str(kind), n_in, hidden)
    if key not in _FUSED:
        if kind == "LSTM":
            module: nn.Module = nn.LSTM(n_in, hidden, batch_first=True, device="meta")
        elif kind == "GRU":
            module = nn.GRU(n_in, hidden, batch_first=True, device="meta")
        else:
            nonlinearity = "relu" if kind == "RNN_RELU" else "tanh"
            module = nn.RNN(n_in, hidden, nonlinearity=nonlinearity, batch_first=True,
                            device="meta")
        _FUSED[key] = module
    return _FUSED[key]


class VanillaCell(RecurrentCell):
    """z[n] = g(Wzz z[n-1] + Wxz x[n] + b) with g = tanh or ReLU."""

    def __init__(self, n_in: int, hidden: int, activation: Literal["tanh", "relu"] = "tanh"):
        super().__init__(n_in, hidden)
        self.input = nn.Linear(n_in, hidden)
        self.recurrent = Recurrent(hidden)
        self.activation = activation
        self.fused_kind = "RNN_RELU" if activation == "relu" else "RNN_TANH"

    def step(self, projected: torch.Tensor, state: State, recurrent: torch.Tensor
             ) -> tuple[torch.Tensor, State]:
        pre = projected + state[0] @ recurrent.T  # (B, H)
        z = torch.relu(pre) if self.activation == "relu" else torch.tanh(pre)
        return z, (z,)

    def _weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.input.weight, self.input.bias, self.recurrent.weight

    def _fused_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.input.weight, self.recurrent.weight, self.input.bias


class GRUCell(RecurrentCell):
    """The lecture's GRU; the reset gate scales the recurrent term Wz z[n-1], as in torch."""

    fused_kind = "GRU"

    def __init__(self, n_in: int, hidden: int):
        super().__init__(n_in, hidden)
        self.reset_gate = Gate(n_in, hidden)
        self.update_gate = Gate(n_in, hidden)
        self.cell_input = Gate(n_in, hidden)

    def step(self, projected: torch.Tensor, state: State, recurrent: torch.Tensor
             ) -> tuple[torch.Tensor, State]:
        z = state[0]  # (B, H)
        x_r, x_u, x_c = projected.split(self.hidden, dim=1)
        z_r, z_u, z_c = (z @ recurrent.T).split(self.hidden, dim=1)
        r = torch.sigmoid(x_r + z_r)
        u = torch.sigmoid(x_u + z_u)
        candidate = torch.tanh(x_c + z_c * r)
        z = z * (1 - u) + candidate * u
        return z, (z,)

    def _gates(self) -> list[Gate]:
        return [self.reset_gate, self.update_gate, self.cell_input]

    def _weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return _stacked(self._gates())

    def _fused_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # torch's update gate keeps the old state (z' = (1 - g) n + g z): it is our 1 - u,
        # and sigmoid(-a) = 1 - sigmoid(a), so its weights are our update gate's, negated.
        signs = [1.0, -1.0, 1.0]
        gates = self._gates()
        return (torch.cat([s * g.weight for s, g in zip(signs, gates, strict=True)]),
                torch.cat([s * g.recurrent_weight for s, g in zip(signs, gates, strict=True)]),
                torch.cat([s * g.bias for s, g in zip(signs, gates, strict=True)]))


class LSTMCell(RecurrentCell):
    """The lecture's LSTM cell and Greff et al.'s variants of it.

    standard: forget, input and output gates with peepholes from the cell state (Greff's
    vanilla LSTM). no_input_gate / no_forget_gate / no_output_gate: that gate is fixed at 1.
    no_input_activation / no_output_activation: the tanh on ~h / on h[n] is the identity.
    no_peepholes: exactly the lecture's slide (and torch's nn.LSTM). coupled_input_forget:
    f = 1 - i. full_gate_recurrence: every gate also sees all gate values of step n-1.
    """

    def __init__(self, n_in: int, hidden: int, variant: LSTMVariant = "standard"):
        super().__init__(n_in, hidden)
        self.variant = variant
        peep = variant != "no_peepholes"
        absent = {"no_input_gate": "input_gate", "no_forget_gate": "forget_gate",
                  "coupled_input_forget": "forget_gate", "no_output_gate": "output_gate"}
        self.gate_names = [name for name in ("forget_gate", "input_gate", "output_gate")
                           if absent.get(variant) != name]
        gate_inputs = len(self.gate_names) * hidden if variant == "full_gate_recurrence" else 0
        for name in self.gate_names:
            setattr(self, name, Gate(n_in, hidden, peephole=peep, gate_inputs=gate_inputs))
        self.cell_input = Gate(n_in, hidden)
        self.fused_kind = "LSTM" if variant == "no_peepholes" else None

    def gate(self, name: str) -> Gate:
        gate = getattr(self, name)
        assert isinstance(gate, Gate), f"{name} is not a gate of this {self.variant} cell"
        return gate

    def _gates(self) -> list[Gate]:
        return [self.gate(name) for name in (*self.gate_names, "cell_input")]

    def initial_state(self, batch: int, like: torch.Tensor) -> State:
        zeros = like.new_zeros(batch, self.hidden)
        gates = like.new_zeros(batch, self.hidden * len(self.gate_names))
        return zeros, zeros, gates  # output z, cell state h, previous gate values

    def step(self, projected: torch.Tensor, state: State, recurrent: torch.Tensor
             ) -> tuple[torch.Tensor, State]:
        z, h, previous = state  # (B, H), (B, H), (B, G*H)
        pre = dict(zip([*self.gate_names, "cell_input"],
                       (projected + z @ recurrent.T).split(self.hidden, dim=1), strict=True))
        for name in self.gate_names:
            gate = self.gate(name)
            if gate.gate_weight is not None:
                pre[name] = pre[name] + previous @ gate.gate_weight.T
        i = self._open("input_gate", pre, h)
        f = 1 - i if self.variant == "coupled_input_forget" else self._open("forget_gate", pre, h)
        candidate = pre["cell_input"]
        if self.variant != "no_input_activation":
            candidate = torch.tanh(candidate)
        h = h * f + candidate * i  # (B, H): the additive state update
        o = self._open("output_gate", pre, h)  # its peephole sees the new state
        z = (h if self.variant == "no_output_activation" else torch.tanh(h)) * o
        values = [v for name, v in zip(("forget_gate", "input_gate", "output_gate"), (f, i, o),
                                       strict=True)
                  if name in self.gate_names and isinstance(v, torch.Tensor)]
        return z, (z, h, torch.cat(values, dim=1) if values else previous)

    def _open(self, name: str, pre: dict[str, torch.Tensor], h: torch.Tensor
              ) -> torch.Tensor | float:
        """A gate's value in (0, 1); 1 for a gate this variant does not have."""
        if name not in self.gate_names:
            return 1.0
        gate = self.gate(name)
        a = pre[name] if gate.peephole is None else pre[name] + gate.peephole * h
        return torch.sigmoid(a)

    def _weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return _stacked(self._gates())

    def _fused_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        order = [self.gate(n) for n in ("input_gate", "forget_gate", "cell_input",
                                        "output_gate")]  # torch's order: i, f, g, o
        return (torch.cat([g.weight for g in order]),
                torch.cat([g.recurrent_weight for g in order]),
                torch.cat([g.bias for g in order]))


def _stacked(gates: list[Gate]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (torch.cat([g.weight for g in gates]), torch.cat([g.bias for g in gates]),
            torch.cat([g.recurrent_weight for g in gates]))


def make_cell(cell: CellName, n_in: int, hidden: int, *, variant: LSTMVariant = "standard",
              activation: Literal["tanh", "relu"] = "tanh") -> RecurrentCell:
    if cell == "lstm":
        return LSTMCell(n_in, hidden, variant)
    if cell == "gru":
        return GRUCell(n_in, hidden)
    return VanillaCell(n_in, hidden, activation)


@torch.no_grad()
def set_forget_bias(module: nn.Module, value: float) -> None:
    """Start every LSTM forget gate at `value` (1.0 keeps the state by default, so gradients
    flow through time from the first step: Jozefowicz et al., 2015)."""
    for cell in module.modules():
        if isinstance(cell, LSTMCell) and "forget_gate" in cell.gate_names:
            cell.gate("forget_gate").bias.fill_(value)
