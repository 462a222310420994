"""The events of the training loop, the `Callback` base that hooks into them, and the view of
the trainer a callback is handed.

Each step fires, in this order (the loop calls only the hooks a callback implements, so an
event nobody implements costs nothing):

  transform_input(x) -> x  the training batch's inputs, before the forward pass; returns what
                           the model sees (input corruption)
  penalty() -> loss term   after the forward pass, inside autocast: a term added to the loss,
                           or None (weight and activity penalties)
  on_after_backward        gradients are computed and unscaled, not clipped yet
  adjust_gradients         changes the gradients in place (clipping), after every
                           on_after_backward has seen them as backward left them
  on_before_update         the weights are about to change (the optimizer step, or a
                           non-gradient rule)
  adjust_weights           right after the optimizer step: changes the weights in place
                           (constraints), before on_step_end sees them
  on_step_end              the weights have changed; `trainer.step` counts this step

A kind that does not learn by gradient descent (Hebbian storage, contrastive divergence) has
no loss to add to, no gradients and no optimizer: its steps fire only transform_input,
on_before_update and on_step_end. Per training: on_train_start, on_epoch_end after each epoch,
on_train_end, then `summary` adds to the training's result.

Callbacks run in the order the trainer holds them; `workers.training.build.build_trainer` puts
the spec's regularizers first (so their random draws and penalty terms come in a fixed order),
then the caller's. A callback that must survive a resume names its state with `state_key` and
gives it with `state_dict`; the trainer's checkpoint holds it under that key.

This module imports neither the loop nor tracking: callbacks type against `TrainerView`, so a
regularizer, a diagnosis recorder or a logger never imports the `Trainer` that runs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

import torch

from models.base import LayerwiseModel

# Every hook the loop calls, in the order it calls them within a step or a training.
EVENTS = ("on_train_start", "transform_input", "penalty", "on_after_backward",
          "adjust_gradients", "on_before_update", "adjust_weights", "on_step_end",
          "on_epoch_end", "on_train_end", "summary")


class TrainerView(Protocol):
    """What a callback reads of the trainer that runs it, and what it may call.

    `step` counts optimizer steps done and is writable (a sweep trial restored from Tune's
    checkpoint continues its count); `epoch` is 0-based and current; `start_epoch` is the
    epoch a resumed training starts at; `last_loss` is the last step's loss, a device tensor.
    """

    step: int

    @property
    def model(self) -> LayerwiseModel: ...

    @property
    def optimizer(self) -> torch.optim.Optimizer | None: ...

    @property
    def epoch(self) -> int: ...

    @property
    def epochs(self) -> int: ...

    @property
    def start_epoch(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def last_loss(self) -> torch.Tensor: ...

    @property
    def stop_reason(self) -> str | None: ...

    @property
    def callbacks(self) -> Sequence[Callback]: ...

    def request_stop(self, reason: str) -> None:
        """End training after the current epoch (its callbacks still run)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed training needs (what a checkpoint callback saves)."""


def implements(callback: object, event: str) -> bool:
    """Whether `callback` does something on `event`: it overrides the base's empty hook, or
    is not a Callback at all and has the method."""
    own = vars(callback).get(event) if hasattr(callback, "__dict__") else None
    hook = getattr(type(callback), event, None)
    return own is not None or (hook is not None and hook is not getattr(Callback, event, None))


def by_state_key(callbacks: Sequence[Callback]) -> dict[str, Callback]:
    """The callbacks that keep state across a resume, by their `state_key`.

    Raises:
        ValueError: two callbacks name their state alike.
    """
    stateful: dict[str, Callback] = {}
    for callback in callbacks:
        key = getattr(callback, "state_key", None)  # a duck-typed callback may not have one
        if key is None:
            continue
        if key in stateful:
            raise ValueError(f"two callbacks keep their state under {key!r}")
        stateful[key] = callback
    return stateful


class Callback:
    """Base of loop callbacks; every hook is optional."""

    # The key of this callback's state in the trainer's checkpoint, unique among a trainer's
    # callbacks and kept across versions of the code; None: nothing to keep across a resume.
    state_key: ClassVar[str | None] = None

    def on_train_start(self, trainer: TrainerView) -> None:
        """The model, optimizer and data are ready (and a resumed state loaded); no step has
        run."""

    def transform_input(self, trainer: TrainerView, x: torch.Tensor) -> torch.Tensor:
        """The inputs of a training batch, before the forward pass: returns what the model
        sees. Evaluation never calls it."""
        return x

    def penalty(self, trainer: TrainerView) -> torch.Tensor | None:
        """A term to add to this step's loss (a device scalar), or None; the forward pass has
        just run. Gradient models only."""
        return None

    def on_after_backward(self, trainer: TrainerView) -> None:
        """Gradients are computed; they are not clipped yet and the weights are unchanged."""

    def adjust_gradients(self, trainer: TrainerView) -> None:
        """Change the gradients in place before the optimizer sees them. Gradient models
        only."""

    def on_before_update(self, trainer: TrainerView) -> None:
        """Fires right before the weights change (the optimizer step, or a non-gradient rule)."""

    def adjust_weights(self, trainer: TrainerView) -> None:
        """Change the weights in place right after the optimizer step; `trainer.step` does not
        count it yet. Gradient models only."""

    def on_step_end(self, trainer: TrainerView) -> None:
        """The weights have changed; `trainer.step` already counts this step."""

    def on_epoch_end(self, trainer: TrainerView, metrics: dict[str, float]) -> None:
        """Train and validation metrics of the finished epoch are in `metrics`."""

    def on_train_end(self, trainer: TrainerView) -> None:
        """Training is over (finished, stopped early or timed out)."""

    def summary(self, trainer: TrainerView) -> dict[str, Any]:
        """What this callback adds to the training's result, after on_train_end."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What a resumed training needs of this callback (with a `state_key`): tensors,
        numbers and None only, so a checkpoint loads without unpickling code."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from what `state_dict` gave."""
