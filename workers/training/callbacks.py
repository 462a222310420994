"""Events of the training loop, and the callbacks that log per-layer norms and progress.

The loop fires these in order for each step: `on_before_update` (the weights are about to
change), `on_after_backward` (gradients are computed, not clipped yet; gradient models only),
`on_step_end` (the weights have changed). The loop calls only the hooks a callback implements,
so an empty one costs nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from workers.tracking.metric_sink import MetricSink
from workers.training.norms import LayerNormProbe

if TYPE_CHECKING:
    from workers.training.loop import Trainer

# How many logged steps the device buffer holds before it is copied to the host at once.
FLUSH_EVERY_LOGGED_STEPS = 512


EVENTS = ("on_train_start", "on_before_update", "on_after_backward", "on_step_end",
          "on_epoch_end", "on_train_end")


def implements(callback: object, event: str) -> bool:
    """Whether `callback` does something on `event`: it overrides the base's empty hook, or
    is not a Callback at all and has the method."""
    own = vars(callback).get(event) if hasattr(callback, "__dict__") else None
    hook = getattr(type(callback), event, None)
    return own is not None or (hook is not None and hook is not getattr(Callback, event, None))


class Callback:
    """Base of loop callbacks; every hook is optional."""

    def on_train_start(self, trainer: Trainer) -> None:
        """The model, optimizer and data are ready; no step has run."""

    def on_before_update(self, trainer: Trainer) -> None:
        """Fires right before the weights change (the optimizer step, or a non-gradient rule)."""

    def on_after_backward(self, trainer: Trainer) -> None:
        """Gradients are computed; they are not clipped yet and the weights are unchanged."""

    def on_step_end(self, trainer: Trainer) -> None:
        """The weights have changed; `trainer.step` already counts this step."""

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        """Train and validation metrics of the finished epoch are in `metrics`."""

    def on_train_end(self, trainer: Trainer) -> None:
        """Training is over (finished, stopped early or timed out)."""


class LayerNormLogger(Callback):
    """Logs `grad_norm/<layer>`, `grad_norm/total`, `update_norm/<layer>` and
    `weight_norm/<layer>` every `every_steps` optimizer steps, with step = optimizer step.

    Values stay on the device in a list of vectors and reach MLflow in one copy per
    FLUSH_EVERY_LOGGED_STEPS logged steps or per epoch.
    """

    def __init__(self, probe: LayerNormProbe, sink: MetricSink, *, every_steps: int):
        self.probe, self.sink, self.every_steps = probe, sink, every_steps
        self.keys = probe.keys
        self._rows: list[torch.Tensor] = []
        self._steps: list[int] = []
        self._times: list[int] = []

    def on_before_update(self, trainer: Trainer) -> None:
        if trainer.step % self.every_steps == 0:
            self.probe.before_update()

    def on_after_backward(self, trainer: Trainer) -> None:
        if trainer.step % self.every_steps == 0:
            self.probe.after_backward()

    def on_step_end(self, trainer: Trainer) -> None:
        step = trainer.step - 1  # the step that just ran
        if step % self.every_steps != 0:
            return
        self._rows.append(self.probe.after_update())
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
        rows = self.probe.layer_norms(self._rows)  # the one host sync per flush
        self.sink.log_rows(self.keys, rows, self._steps, self._times)
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
