"""Sampled activation statistics: how many ReLU units are dead and how many sigmoid-like
activations are saturated.

Every `every_steps` steps (and before the first and after the last, and when the live
diagnosis is about to judge an epoch: `sample_at`), one extra forward pass of a fixed sample
of training examples runs in eval mode, with forward hooks on the model's
activation modules for that pass only. Each hook reduces its output on the device; the
vectors reach the host once per epoch with the other epoch metrics. Hooking the activation
modules, rather than a layer's output, sees the nonlinearity itself: a residual layer's
output adds its skip after the activation, and a dead unit there still looks alive.

Definitions, per activation module:
  dead fraction       units (each output position) that are <= 0 for every sampled example;
                      ReLU only.
  saturated fraction  activations where the derivative is below `saturation_derivative`
                      times its maximum: sigmoid a(1-a) / 0.25, tanh 1 - a^2, arctan cos^2(a);
                      a binary step is flat everywhere.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from models.activations import ArcTan, BinaryStep
from workers.training.callback_base import Callback, TrainerView

# Activation modules by what can go wrong with them.
_DEAD = (nn.ReLU,)
_SATURATING = {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", ArcTan: "arctan", BinaryStep: "step"}


def activation_modules(model: nn.Module) -> dict[str, str]:
    """{module path: "relu" | "sigmoid" | "tanh" | "arctan" | "step"}, input to output."""
    found: dict[str, str] = {}
    for name, module in model.named_modules():
        if isinstance(module, _DEAD):
            found[name] = "relu"
        for cls, kind in _SATURATING.items():
            if isinstance(module, cls):
                found[name] = kind
    return found


def saturated_mask(a: torch.Tensor, kind: str, derivative: float) -> torch.Tensor:
    """Where an activation's output `a` sits at a derivative below `derivative` x its max."""
    if kind == "sigmoid":
        return a * (1 - a) < 0.25 * derivative
    if kind == "tanh":
        return 1 - a * a < derivative
    if kind == "arctan":
        return torch.cos(a).square() < derivative
    return torch.ones_like(a, dtype=torch.bool)  # step: flat everywhere


class ActivationSampler(Callback):
    """Logs `activation/dead_fraction/<module>` and `activation/saturated_fraction/<module>`
    (and their totals over all units of that kind) at the sampled steps."""

    def __init__(self, model: nn.Module, sample: torch.Tensor, sink: Any, *, every_steps: int,
                 saturation_derivative: float):
        self.model, self.sample, self.sink = model, sample, sink
        self.every_steps, self.derivative = every_steps, saturation_derivative
        self.kinds = activation_modules(model)
        self.keys = self._keys()
        self._rows: list[torch.Tensor] = []
        self._steps: list[int] = []
        self._last_step: int | None = None  # the step of the last sample taken
        self._totals: torch.Tensor | None = None  # (T, M): each total's weight per module
        self.steps: list[int] = []  # every sampled step, on the host
        self.rows: list[list[float]] = []

    def _keys(self) -> list[str]:
        keys = [f"activation/{'dead' if kind == 'relu' else 'saturated'}_fraction/{name}"
                for name, kind in self.kinds.items()]
        if any(kind == "relu" for kind in self.kinds.values()):
            keys.append("activation/dead_fraction")
        if any(kind != "relu" for kind in self.kinds.values()):
            keys.append("activation/saturated_fraction")
        return keys

    # -- events --------------------------------------------------------------------------
    def on_train_start(self, trainer: TrainerView) -> None:
        self._measure(trainer.step)

    def on_step_end(self, trainer: TrainerView) -> None:
        if trainer.step % self.every_steps == 0:
            self._measure(trainer.step)

    def on_epoch_end(self, trainer: TrainerView, metrics: dict[str, float]) -> None:
        self.flush()

    def on_train_end(self, trainer: TrainerView) -> None:
        # The last sample's step, not the unflushed ones': when the last step is one of
        # `every_steps`, its sample was taken and flushed at the last epoch's end already.
        if self._last_step != trainer.step:
            self._measure(trainer.step)
        self.flush()

    def sample_at(self, step: int) -> None:
        """A sample now (unless one was taken at this step), on the host at once: the live
        diagnosis asks for one before it judges an epoch."""
        if self._last_step != step:
            self._measure(step)
        self.flush()

    # -- measuring -----------------------------------------------------------------------
    @torch.no_grad()
    def _measure(self, step: int) -> None:
        outputs: dict[str, torch.Tensor] = {}
        modules = dict(self.model.named_modules())
        handles = [modules[name].register_forward_hook(self._keep(outputs, name))
                   for name in self.kinds]
        was_training = self.model.training
        self.model.eval()
        try:
            self.model(self.sample)
        finally:
            for handle in handles:
                handle.remove()
            self.model.train(was_training)
        self._rows.append(self._row(outputs))
        self._steps.append(step)
        self._last_step = step

    @staticmethod
    def _keep(outputs: dict[str, torch.Tensor], name: str) -> Any:
        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            outputs[name] = output  # the last call wins, for a module used twice
        return hook

    def _row(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """[fraction per module..., dead total, saturated total], on the device."""
        values, counts = [], []
        for name, kind in self.kinds.items():
            a = outputs[name].float()  # (B, units, ...)
            if kind == "relu":
                flags = (a <= 0).all(dim=0)  # (units, ...): never active
            else:
                flags = saturated_mask(a, kind, self.derivative)
            values.append(flags.float().mean())
            counts.append((kind == "relu", float(flags.numel())))
        row = torch.stack(values)  # (M,)
        if self._totals is None or self._totals.device != row.device:  # built once
            weights = [[n if is_relu == relu else 0.0 for is_relu, n in counts]
                       for relu in (True, False)]
            kept = [w for w in weights if sum(w) > 0]  # (T, M): unit counts per total
            self._totals = torch.tensor([[n / sum(w) for n in w] for w in kept],
                                        device=row.device) if kept else torch.zeros(0)
        if not len(self._totals):
            return row
        return torch.cat([row, self._totals @ row])

    def flush(self) -> None:
        if not self._rows:
            return
        rows = torch.stack(self._rows).cpu().tolist()  # the one host sync per epoch
        now = int(time.time() * 1000)
        self.sink.log_rows(self.keys, rows, self._steps, [now] * len(rows))
        self.steps += self._steps
        self.rows += rows
        self._rows, self._steps = [], []

    # -- results -------------------------------------------------------------------------
    def final(self) -> dict[str, float]:
        """The last sample's values, keyed as logged."""
        return dict(zip(self.keys, self.rows[-1], strict=True)) if self.rows else {}

    def series(self) -> tuple[np.ndarray, np.ndarray]:
        """(steps (S,), values (S, K)) over the run, columns in the order of `keys`."""
        return np.asarray(self.steps), np.asarray(self.rows).reshape(len(self.rows), -1)
