"""Events of the training loop, and the callbacks that log per-layer norms and progress.

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

Callbacks run in the order the trainer holds them: the spec's regularizers first (so their
random draws and penalty terms come in a fixed order), then the caller's. A callback that must
survive a resume names its state with `state_key` and gives it with `state_dict`; the trainer's
checkpoint holds it under that key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from workers.tracking.metric_sink import MetricSink
from workers.training.norms import PerLayerNorms

if TYPE_CHECKING:
    from workers.training.loop import Trainer

# How many logged steps the device buffer holds before it is copied to the host at once.
FLUSH_EVERY_LOGGED_STEPS = 512

# Every hook the loop calls, in the order it calls them within a step or a training.
EVENTS = ("on_train_start", "transform_input", "penalty", "on_after_backward",
          "adjust_gradients", "on_before_update", "adjust_weights", "on_step_end",
          "on_epoch_end", "on_train_end", "summary")


def implements(callback: object, event: str) -> bool:
    """Whether `callback` does something on `event`: it overrides the base's empty hook, or
    is not a Callback at all and has the method."""
    own = vars(callback).get(event) if hasattr(callback, "__dict__") else None
    hook = getattr(type(callback), event, None)
    return own is not None or (hook is not None and hook is not getattr(Callback, event, None))



def by_state_key(callbacks: list[Callback]) -> dict[str, Callback]:
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

    def on_train_start(self, trainer: Trainer) -> None:
        """The model, optimizer and data are ready (and a resumed state loaded); no step has
        run."""

    def transform_input(self, trainer: Trainer, x: torch.Tensor) -> torch.Tensor:
        """The inputs of a training batch, before the forward pass: returns what the model
        sees. Evaluation never calls it."""
        return x

    def penalty(self, trainer: Trainer) -> torch.Tensor | None:
        """A term to add to this step's loss (a device scalar), or None; the forward pass has
        just run. Gradient models only."""
        return None

    def on_after_backward(self, trainer: Trainer) -> None:
        """Gradients are computed; they are not clipped yet and the weights are unchanged."""

    def adjust_gradients(self, trainer: Trainer) -> None:
        """Change the gradients in place before the optimizer sees them. Gradient models
        only."""

    def on_before_update(self, trainer: Trainer) -> None:
        """Fires right before the weights change (the optimizer step, or a non-gradient rule)."""

    def adjust_weights(self, trainer: Trainer) -> None:
        """Change the weights in place right after the optimizer step; `trainer.step` does not
        count it yet. Gradient models only."""

    def on_step_end(self, trainer: Trainer) -> None:
        """The weights have changed; `trainer.step` already counts this step."""

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        """Train and validation metrics of the finished epoch are in `metrics`."""

    def on_train_end(self, trainer: Trainer) -> None:
        """Training is over (finished, stopped early or timed out)."""

    def summary(self, trainer: Trainer) -> dict[str, Any]:
        """What this callback adds to the training's result, after on_train_end."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What a resumed training needs of this callback (with a `state_key`): tensors,
        numbers and None only, so a checkpoint loads without unpickling code."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from what `state_dict` gave."""


# Called with (keys, rows (S, K) float64 on the host, steps) at each flush of the norm logger.
NormRecorder = Callable[[list[str], np.ndarray, list[int]], None]


class PerLayerNormLogger(Callback):
    """Logs `grad_norm/<layer>`, `grad_norm/total`, `update_norm/<layer>` and
    `weight_norm/<layer>` every `every_steps` optimizer steps, with step = optimizer step.

    Values stay on the device in a list of vectors and reach MLflow in one copy per
    FLUSH_EVERY_LOGGED_STEPS logged steps or per epoch. Each recorder added with
    `add_recorder` gets every flushed block too (the diagnostics keep them for the verdict).
    """

    def __init__(self, norms: PerLayerNorms, sink: MetricSink, *, every_steps: int):
        self.norms, self.sink, self.every_steps = norms, sink, every_steps
        self.keys = norms.keys
        self._recorders: list[NormRecorder] = []
        self._rows: list[torch.Tensor] = []
        self._steps: list[int] = []
        self._times: list[int] = []

    def add_recorder(self, record: NormRecorder) -> None:
        self._recorders.append(record)

    def on_before_update(self, trainer: Trainer) -> None:
        if trainer.step % self.every_steps == 0:
            self.norms.before_update()

    def on_after_backward(self, trainer: Trainer) -> None:
        if trainer.step % self.every_steps == 0:
            self.norms.after_backward()

    def on_step_end(self, trainer: Trainer) -> None:
        step = trainer.step - 1  # the step that just ran
        if step % self.every_steps != 0:
            return
        self._rows.append(self.norms.after_update())
        self._steps.append(step)
        self._times.append(int(time.time() * 1000))
        if len(self._rows) >= FLUSH_EVERY_LOGGED_STEPS:
            self.flush()

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self.flush()

    def on_train_end(self, trainer: Trainer) -> None:
        self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        rows = self.norms.layer_norms(self._rows)  # the one host sync per flush
        self.sink.log_rows(self.keys, rows, self._steps, self._times)
        for record in self._recorders:
            record(self.keys, rows, self._steps)
        self._rows, self._steps, self._times = [], [], []


class EpochMetricLogger(Callback):
    """Logs the epoch's metrics (train/, val/, lr, throughput) at the epoch's last step."""

    def __init__(self, sink: MetricSink):
        self.sink = sink

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self.sink.log(metrics, step=max(0, trainer.step - 1))


class EpochArtifactLogger(Callback):
    """Records the text artifacts a model offers after each epoch (`epoch_artifacts`): a
    language model's generated sample, for example. Models that offer none cost one call."""

    def __init__(self, log_text: Callable[[str, str], None]):
        self.log_text = log_text  # (text, artifact_file)

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        for artifact_file, text in trainer.model.epoch_artifacts(trainer.epoch + 1).items():
            self.log_text(text, artifact_file)


class ProgressReporter(Callback):
    """Hands {epoch, epochs, step, metrics} to `report` (to the job store): the first epoch's,
    then at most one per `every_s`, and the last one always.

    Every report is an actor call and, in the service, a store write. A sweep of short trials
    ends an epoch every few milliseconds: reporting each cost the board and the dispatcher
    more CPU than some of the trials' training.
    """

    def __init__(self, report: Callable[[dict[str, Any]], None], every_s: float = 0.25):
        self.report = report
        self.every_s = every_s
        self._sent_at: float | None = None
        self._unsent: dict[str, Any] | None = None

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        progress = {"epoch": trainer.epoch + 1, "epochs": trainer.epochs, "step": trainer.step,
                    "metrics": metrics}
        if self._sent_at is not None and time.monotonic() - self._sent_at < self.every_s:
            self._unsent = progress
            return
        self._send(progress)

    def on_train_end(self, trainer: Trainer) -> None:
        if self._unsent is not None:
            self._send(self._unsent)

    def _send(self, progress: dict[str, Any]) -> None:
        self._sent_at, self._unsent = time.monotonic(), None
        self.report({"progress": progress})
