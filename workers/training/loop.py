"""The one training loop every model kind runs through.

Mini-batches from tensors already on the device, the model's `training_step`, backward, the
optimizer; per epoch the train and validation metrics and the schedule. Everything else hooks
in through the events of `Callback` (workers.training.callback_base), in the order documented
there. The loop is handed its callbacks and knows none of them: `workers.training.build`
composes the spec's regularizers (input corruption, penalties, clipping, constraints, early
stopping), then the caller's diagnostics, logging and checkpoints.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from functools import partial
from typing import Any

import torch

from models.base import LayerwiseModel
from models.objectives import Objective
from workers.training.callback_base import EVENTS, Callback, by_state_key, implements
from workers.training.config import TrainingConfig
from workers.training.data_parallel import DataParallel, TrainingStep
from workers.training.evaluation import Split, evaluate
from workers.training.metrics import (
    PENALTY,
    MetricSums,
    StepMetrics,
    accumulate,
    summarize,
)
from workers.training.optim import build_optimization
from workers.training.rng import restore_rng, rng_state

__all__ = ["Diverged", "Split", "Trainer"]


class Diverged(RuntimeError):
    """The loss became NaN or infinite. `non_finite_data`: where the training split holds a
    value that is not finite ({"field": "x" or "y", "row": the first such row}), when that is
    the cause; `diagnosis`: the run's diagnosis of it (set by `workers.run`), which travels
    with the error to the job's record."""

    def __init__(self, message: str, non_finite_data: dict[str, Any] | None = None):
        super().__init__(message)
        self.non_finite_data = non_finite_data
        self.diagnosis: dict[str, Any] | None = None


class Trainer:
    """Trains `model` on `splits["train"]` as `config` says, firing `callbacks` in the order
    given (workers.training.build.build_trainer puts the spec's regularizers first).

    What the callbacks read and call is `TrainerView` (workers.training.callback_base): model,
    optimizer, step (optimizer steps done), epoch (0-based, current), epochs, device,
    last_loss (a device tensor), `request_stop(reason)` to end after the current epoch.
    """

    def __init__(self, config: TrainingConfig, model: LayerwiseModel, objective: Objective,
                 splits: dict[str, Split], *, device: torch.device,
                 callbacks: list[Callback], parallel: DataParallel | None = None):
        self.config, self.model, self.objective, self.splits = config, model, objective, splits
        self.device, self.parallel = device, parallel
        self.epochs, self.epoch, self.step, self.start_epoch = config.training.epochs, 0, 0, 0
        self.stop_reason: str | None = None
        self.optimizer, self.schedule = build_optimization(config, model)
        if parallel is not None and self.optimizer is None:
            raise ValueError("resources.workers > 1 needs a kind that learns by gradient "
                             "descent; set resources.workers to 1")
        # fp16 gradients underflow without loss scaling; disabled, the scaler is a pass-through.
        self.scaler = torch.amp.GradScaler(device.type, enabled=(
            config.training.precision == "fp16" and self.optimizer is not None))
        self._generator = torch.Generator(device="cpu").manual_seed(config.training.seed)
        self.callbacks = list(callbacks)
        self._stateful = by_state_key(self.callbacks)
        # A NaN or infinite loss is caught within one step. On the CPU reading the loss is a
        # memory read; on a GPU it is a device sync, so there it is read every 16 steps.
        self._divergence_every = 1 if device.type == "cpu" else 16

    # -- checkpoints ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue as if it had not stopped."""
        return {
            "epoch": self.epoch + 1, "step": self.step, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer else None,
            "schedule": self.schedule.state_dict() if self.schedule else None,
            "scaler": self.scaler.state_dict(), "rng": rng_state(self._generator),
            "callbacks": {key: callback.state_dict() for key, callback in self._stateful.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint: training resumes at the epoch after it."""
        self.model.load_state_dict(state["model"])
        if self.optimizer is not None and state["optimizer"] is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        if self.schedule is not None and state["schedule"] is not None:
            self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])
        restore_rng(state["rng"], self._generator)
        saved = state.get("callbacks", {})
        for key, callback in self._stateful.items():
            if key in saved:
                callback.load_state_dict(saved[key])
        self.start_epoch, self.step = int(state["epoch"]), int(state["step"])

    # -- events --------------------------------------------------------------------------
    def _fire(self, event: str, *args: Any) -> None:
        for hook in self._hooks[event]:
            hook(self, *args)

    def _bind_hooks(self) -> None:
        """Per event, the callbacks that implement it: most events fire at every step, and a
        run has half a dozen callbacks that mostly leave them empty."""
        self._hooks = {event: [getattr(callback, event) for callback in self.callbacks
                               if implements(callback, event)] for event in EVENTS}

    def request_stop(self, reason: str) -> None:
        """End training after the current epoch (its callbacks still run)."""
        self.stop_reason = self.stop_reason or reason

    # -- training ------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train, then evaluate. Returns the final metrics and how training ended.

        Raises:
            Diverged: the training loss became NaN or infinite.
        """
        self._bind_hooks()
        self._fire("on_train_start")
        # What a step calls: the model's training step, or DDP around it.
        self._training_step: Any = (
            partial(self.model.training_step, objective=self.objective) if self.parallel is None
            else self.parallel.wrap(TrainingStep(self.model, self.objective)))
        self._optimized = ([p for group in self.optimizer.param_groups for p in group["params"]]
                           if self.optimizer else [])
        train = self.splits["train"]
        training = self.config.training
        batch = len(train) if training.batch_size == "full" else min(
            int(training.batch_size), len(train))
        deadline = (time.monotonic() + training.max_runtime_s
                    if training.max_runtime_s else math.inf)
        metrics: dict[str, float] = {}
        for epoch in range(self.start_epoch, self.epochs):
            self.epoch = epoch
            started = time.perf_counter()
            sums = self._train_epoch(train, batch)
            metrics = self._epoch_metrics(sums, time.perf_counter() - started, len(train))
            if time.monotonic() > deadline:
                self.request_stop("max_runtime_s")
            self._fire("on_epoch_end", metrics)
            if self.parallel is not None:  # rank 0's decision, so every rank runs the same steps
                self.stop_reason = self.parallel.broadcast(self.stop_reason)
            if self.schedule is not None:
                self.schedule.step()
            if self.stop_reason is not None:
                break
        self._fire("on_train_end")
        return self._final_result(metrics)

    def _train_epoch(self, train: Split, batch: int) -> MetricSums:
        self.model.train()
        order = torch.randperm(len(train), generator=self._generator).to(self.device)
        transforms = self._hooks["transform_input"]
        # The base training step's loss is the objective's on its output: the epoch's train
        # loss reuses it instead of computing it again.
        reuse_loss = type(self.model).training_step is LayerwiseModel.training_step
        sums: MetricSums = {}
        pending = StepMetrics(self.objective, reuse_loss=reuse_loss)
        penalties: MetricSums = {}
        for start in range(0, len(train), batch):
            index, weight = order[start:start + batch], 1.0
            if self.parallel is not None:
                index, weight = self.parallel.shard(index)
            x, y = train.x[index], train.y[index]
            for transform in transforms:
                x = transform(self, x)
            output, penalty = self._step(x, y, weight)
            if weight == 0.0:  # a stand-in example of an empty shard: not counted
                continue
            pending.add(sums, output.detach(), y, self.last_loss)
            if penalty is not None:  # summed per example like the loss: the epoch's mean
                accumulate(penalties, {PENALTY: penalty * float(y.shape[0])})
        pending.flush(sums)
        sums |= penalties  # after the objective's sums, the order their keys are logged in
        return sums if self.parallel is None else self.parallel.sum_metrics(sums)

    def _step(self, x: torch.Tensor, y: torch.Tensor, weight: float = 1.0
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One update. Returns the step's output and its penalty (a device scalar, or None).
        `weight` scales what backward sees: a data-parallel rank's share of the batch."""
        if self.optimizer is None:  # Hebbian storage, contrastive divergence, ...
            self._fire("on_before_update")
            with torch.no_grad():
                out = self.model.training_step(x, y, self.objective)
            self.last_loss = out["loss"]
            self.step += 1
            self._fire("on_step_end")
            return out["output"], None
        with self._autocast():
            out = self._training_step(x, y)
            loss = out["loss"]
            penalty = self._penalty()
            total = loss if penalty is None else loss + penalty
            if weight != 1.0:
                total = total * weight
        self.last_loss = loss.detach()
        if self.step % self._divergence_every == 0 and not math.isfinite(self.last_loss.item()):
            raise self._diverged(float(self.last_loss))
        # optimizer.zero_grad(set_to_none=True) without its profiler wrapper, a measurable
        # share of a small MLP's step (BENCHMARKS.md).
        for param in self._optimized:
            param.grad = None
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)  # callbacks and clipping see true gradients
        self._fire("on_after_backward")
        self._fire("adjust_gradients")
        self._fire("on_before_update")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self._fire("adjust_weights")
        self.step += 1
        self._fire("on_step_end")
        return out["output"], None if penalty is None else penalty.detach()

    def _diverged(self, loss: float) -> Diverged:
        """The error of a loss that turned NaN or inf: the data's fault when the training split
        holds a value that is not finite (read only here, off the step's path), the
        optimizer's otherwise."""
        train = self.splits["train"]
        for name, values in (("x", train.x), ("y", train.y)):
            if values.is_floating_point() and not bool(torch.isfinite(values).all()):
                row = int((~torch.isfinite(values)).reshape(len(values), -1).any(1)
                          .nonzero()[0, 0])
                return Diverged(f"diverged at step {self.step}: the training loss is {loss} "
                                f"because the training data holds NaN/inf in {name} (row "
                                f"{row} of the training split); clean the data",
                                {"field": name, "row": row})
        return Diverged(f"diverged at step {self.step}: the training loss is {loss}; lower "
                        "optimizer.lr or set training.grad_clip_norm")

    def _penalty(self) -> torch.Tensor | None:
        """The callbacks' penalty terms of the forward pass that just ran, summed in callback
        order, or None when none has one."""
        total: torch.Tensor | None = None
        for hook in self._hooks["penalty"]:
            term = hook(self)
            if term is not None:
                total = term if total is None else total + term
        return total

    def _autocast(self):
        precision = self.config.training.precision
        if precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    # -- evaluation ----------------------------------------------------------------------
    def evaluate(self, split: Split) -> MetricSums:
        """Metric sums over `split` (device tensors), dropout at its inference rule."""
        return evaluate(self.config.dropout_inference, self.config.training.seed, self.model,
                        self.objective, split, self.device)

    def _epoch_metrics(self, train_sums: MetricSums, seconds: float, n_train: int
                       ) -> dict[str, float]:
        metrics = summarize("train", train_sums, task=self.objective.task)
        if not math.isfinite(metrics["train/loss"]):
            raise self._diverged(metrics["train/loss"])
        if "val" in self.splits and len(self.splits["val"]):
            metrics.update(summarize("val", self.evaluate(self.splits["val"]),
                                     task=self.objective.task))
        metrics.update(self.model.epoch_metrics())  # what non-gradient kinds measure
        if self.optimizer is not None:
            metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        metrics["throughput/samples_per_s"] = n_train / max(seconds, 1e-9)
        return metrics

    def _final_result(self, last: dict[str, float]) -> dict[str, Any]:
        """Final val/test metrics of the model as it ends (the best epoch's weights when early
        stopping restored them), what the callbacks add, and how training ended."""
        result: dict[str, Any] = {}
        for name in ("val", "test"):
            if name in self.splits and len(self.splits[name]):
                result.update(summarize(name, self.evaluate(self.splits[name]),
                                        task=self.objective.task))
        result["train/loss"] = last.get("train/loss")
        result["epochs_run"] = self.epoch + 1
        result["steps"] = self.step
        for summary in self._hooks["summary"]:
            result.update(summary(self))
        if self.stop_reason is not None:
            result["stopped_epoch"] = self.epoch + 1
            result["stop_reason"] = self.stop_reason
        return result

