"""The one training loop every model kind runs through.

Mini-batches from tensors already on the device, input corruption, the model's
`training_step`, penalties, backward, clipping, the optimizer, constraints; per epoch the train
and validation metrics, the schedule and early stopping. Diagnostics, logging and early
stopping hook in through `Callback` events.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from models.base import LayerwiseModel
from models.mc_dropout import mc_output
from models.objectives import Objective
from models.regularizers import (
    activity_penalty,
    apply_constraints,
    binary_pivot,
    bit_flip,
    constrained_weights,
    gaussian_noise,
    penalized_weights,
    weight_penalty,
)
from services.contract.spec import ExperimentSpec
from workers.training.callbacks import EVENTS, Callback, implements
from workers.training.data_parallel import DataParallel, TrainingStep
from workers.training.early_stopping import EarlyStopping
from workers.training.optim import build_optimizer, build_schedule
from workers.training.rng import restore_rng, rng_state

EVAL_CHUNK = 4096


class Diverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class Split:
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.x)


class Trainer:
    """Trains `model` on `splits["train"]` as the spec says.

    Attributes the callbacks read: model, optimizer, step (optimizer steps done), epoch
    (0-based, current), epochs, device, last_loss (a device tensor). A callback ends training
    after the current epoch with `request_stop(reason)`.
    """

    def __init__(self, spec: ExperimentSpec, model: LayerwiseModel, objective: Objective,
                 splits: dict[str, Split], *, device: torch.device,
                 callbacks: list[Callback] | None = None, parallel: DataParallel | None = None):
        self.spec, self.model, self.objective, self.splits = spec, model, objective, splits
        self.parallel = parallel
        self.device = device
        self.epochs = spec.training.epochs
        self.step = 0
        self.epoch = 0
        self.reg = reg = spec.regularization
        self.optimizer = (build_optimizer(spec.optimizer, list(model.parameters()))
                          if model.uses_gradients and any(True for _ in model.parameters())
                          else None)
        self.schedule = (build_schedule(spec.schedule, self.optimizer, self.epochs)
                         if self.optimizer else None)
        self._optimized = ([p for group in self.optimizer.param_groups for p in group["params"]]
                           if self.optimizer else [])
        # fp16 gradients underflow without loss scaling; disabled, the scaler is a pass-through.
        self.scaler = torch.amp.GradScaler(device.type, enabled=(
            spec.training.precision == "fp16" and self.optimizer is not None))
        self._penalized = penalized_weights(model, include_biases=reg.penalize_biases)
        self._has_penalty = (reg.l1 > 0 or reg.l2 > 0) and bool(self._penalized)
        self._has_activity = reg.activity_l1 > 0 or reg.activity_l2 > 0
        self._constrained = (constrained_weights(model) if reg.max_norm is not None
                             or reg.unit_norm or reg.non_neg else [])
        self._flip_pivot = self._binary_pivot(splits["train"].x)
        self._mc_samples = (reg.dropout_inference.samples
                            if reg.dropout_inference.mode == "mc" else 0)
        self._generator = torch.Generator(device="cpu").manual_seed(spec.training.seed)
        self.early_stopping = (EarlyStopping(reg.early_stopping)
                               if reg.early_stopping.patience is not None else None)
        # Early stopping first: it restores the best weights before other callbacks'
        # on_train_end (final analyses) look at the model.
        self.callbacks = [*([self.early_stopping] if self.early_stopping else []),
                          *(callbacks or [])]
        self.stop_reason: str | None = None
        self.start_epoch = 0
        # A NaN or infinite loss is caught within one step. On the CPU reading the loss is a
        # memory read; on a GPU it is a device sync, so there it is read every 16 steps.
        self._divergence_every = 1 if device.type == "cpu" else 16
        # The base training step's loss is the objective's on its output: the epoch's train
        # loss reuses it instead of computing it again.
        self._step_loss_is_objective = (type(model).training_step
                                        is LayerwiseModel.training_step)
        # What a step calls: the model's training step, or DDP around it (built in fit()).
        self._training_step: Any = partial(model.training_step, objective=objective)
        if parallel is not None and self.optimizer is None:
            raise ValueError("resources.workers > 1 needs a kind that learns by gradient "
                             "descent; set resources.workers to 1")

    # -- checkpoints ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue as if it had not stopped."""
        stopping = self.early_stopping
        return {
            "epoch": self.epoch + 1, "step": self.step, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer else None,
            "schedule": self.schedule.state_dict() if self.schedule else None,
            "scaler": self.scaler.state_dict(), "rng": rng_state(self._generator),
            "early_stopping": None if stopping is None else {
                "best_score": stopping.best_score, "best_epoch": stopping.best_epoch,
                "best_value": stopping.best_value, "best_state": stopping.best_state},
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
        if self.early_stopping is not None and state["early_stopping"] is not None:
            for key, value in state["early_stopping"].items():
                setattr(self.early_stopping, key, value)
        self.start_epoch, self.step = int(state["epoch"]), int(state["step"])

    def _binary_pivot(self, x: torch.Tensor) -> float | None:
        if self.reg.input_flip_prob == 0:
            return None
        pivot = binary_pivot(x)
        if pivot is None:
            raise ValueError("regularization.input_flip_prob needs binary inputs ({0, 1} or "
                             "{-1, 1})")
        return pivot

    # -- events --------------------------------------------------------------------------
    def _fire(self, event: str, *args: Any) -> None:
        for hook in self._hooks[event]:
            hook(self, *args)

    def _bind_hooks(self) -> None:
        """Per event, the callbacks that implement it: three events fire at every step, and a
        run has half a dozen callbacks that mostly leave them empty."""
        self._hooks = {event: [getattr(callback, event) for callback in self.callbacks
                               if implements(callback, event)] for event in EVENTS}

    def request_stop(self, reason: str) -> None:
        """End training after the current epoch (its callbacks still run)."""
        self.stop_reason = self.stop_reason or reason

    # -- training ------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train, then evaluate. Returns the final metrics and the early-stopping facts.

        Raises:
            Diverged: the training loss became NaN or infinite.
        """
        self._bind_hooks()
        self._fire("on_train_start")
        if self.parallel is not None:
            self._training_step = self.parallel.wrap(TrainingStep(self.model, self.objective))
        train = self.splits["train"]
        batch = len(train) if self.spec.training.batch_size == "full" else min(
            int(self.spec.training.batch_size), len(train))
        deadline = (time.monotonic() + self.spec.training.max_runtime_s
                    if self.spec.training.max_runtime_s else math.inf)
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

    def _train_epoch(self, train: Split, batch: int) -> dict[str, torch.Tensor | float]:
        self.model.train()
        order = torch.randperm(len(train), generator=self._generator).to(self.device)
        corrupts = self.reg.input_noise_std > 0 or self._flip_pivot is not None
        sums: dict[str, torch.Tensor | float] = {}
        for start in range(0, len(train), batch):
            index, weight = order[start:start + batch], 1.0
            if self.parallel is not None:
                index, weight = self.parallel.shard(index)
            x, y = train.x[index], train.y[index]
            if corrupts:
                x = self._corrupt(x)
            output, penalty = self._step(x, y, weight)
            if weight == 0.0:  # a stand-in example of an empty shard: not counted
                continue
            metrics = self.objective.metrics(
                output.detach(), y, loss=self.last_loss if self._step_loss_is_objective else None)
            if penalty is not None:  # summed per example like the loss: the epoch's mean
                metrics["penalty"] = penalty * metrics["count"]
            for key, value in metrics.items():
                sums[key] = sums[key] + value if key in sums else value
        return sums if self.parallel is None else self.parallel.sum_metrics(sums)

    def _corrupt(self, x: torch.Tensor) -> torch.Tensor:
        """The lecture's input corruption, during training only: bit flips, Gaussian noise."""
        if self._flip_pivot is not None:
            x = bit_flip(x, self.reg.input_flip_prob, self._flip_pivot)
        if self.reg.input_noise_std > 0:
            x = gaussian_noise(x, self.reg.input_noise_std)
        return x

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
            penalty = self._penalties()
            total = loss if penalty is None else loss + penalty
            if weight != 1.0:
                total = total * weight
        self.last_loss = loss.detach()
        if self.step % self._divergence_every == 0 and not math.isfinite(self.last_loss.item()):
            raise Diverged(f"diverged at step {self.step}: the training loss is "
                           f"{float(self.last_loss)}; lower optimizer.lr or set "
                           "training.grad_clip_norm")
        # optimizer.zero_grad(set_to_none=True) without its profiler wrapper (12 us a step,
        # 7% of a small MLP's step).
        for param in self._optimized:
            param.grad = None
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)  # callbacks and clipping see true gradients
        self._fire("on_after_backward")
        self._clip()
        self._fire("on_before_update")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self._constrained:
            apply_constraints(self._constrained, max_norm=self.reg.max_norm,
                              unit_norm=self.reg.unit_norm, non_neg=self.reg.non_neg)
        self.step += 1
        self._fire("on_step_end")
        return out["output"], None if penalty is None else penalty.detach()

    def _penalties(self) -> torch.Tensor | None:
        """Weight and activity penalties of the forward pass that just ran, or None."""
        total: torch.Tensor | None = None
        if self._has_penalty:
            total = weight_penalty(self._penalized, l1=self.reg.l1, l2=self.reg.l2)
        if self._has_activity:
            hidden = self.model.hidden_activations()
            if hidden:
                activity = activity_penalty(hidden, l1=self.reg.activity_l1,
                                            l2=self.reg.activity_l2)
                total = activity if total is None else total + activity
        return total

    def _clip(self) -> None:
        training = self.spec.training
        if training.grad_clip_value is not None:
            torch.nn.utils.clip_grad_value_(self.model.parameters(), training.grad_clip_value)
        if training.grad_clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), training.grad_clip_norm)

    def _autocast(self):
        precision = self.spec.training.precision
        if precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    # -- evaluation ----------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, split: Split) -> dict[str, torch.Tensor | float]:
        """Metric sums over `split` (device tensors), dropout at its inference rule."""
        self.model.eval()
        sums: dict[str, torch.Tensor | float] = {}
        with self._fixed_masks():
            for start in range(0, len(split), EVAL_CHUNK):
                x, y = split.x[start:start + EVAL_CHUNK], split.y[start:start + EVAL_CHUNK]
                z = (mc_output(self.model, x, self.objective, self._mc_samples)
                     if self._mc_samples else self.model(x))
                for key, value in self.objective.metrics(z, y).items():
                    sums[key] = sums[key] + value if key in sums else value
        return sums

    @contextmanager
    def _fixed_masks(self) -> Iterator[None]:
        """MC evaluation draws the same masks every time from its own seed: the same weights
        give the same validation metrics, and training's random stream is not disturbed."""
        if not self._mc_samples:
            yield
            return
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.spec.training.seed)
            yield

    def _epoch_metrics(self, train_sums: dict[str, torch.Tensor | float], seconds: float,
                       n_train: int) -> dict[str, float]:
        metrics = summarize("train", train_sums, task=self.objective.task)
        if not math.isfinite(metrics["train/loss"]):
            raise Diverged(f"diverged at step {self.step}: the training loss is "
                           f"{metrics['train/loss']}; lower optimizer.lr or set "
                           "training.grad_clip_norm")
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
        stopping restored them), and how training ended."""
        result: dict[str, Any] = {}
        for name in ("val", "test"):
            if name in self.splits and len(self.splits[name]):
                result.update(summarize(name, self.evaluate(self.splits[name]),
                                        task=self.objective.task))
        result["train/loss"] = last.get("train/loss")
        result["epochs_run"] = self.epoch + 1
        result["steps"] = self.step
        if self.early_stopping is not None:
            result.update(self.early_stopping.facts())
        if self.stop_reason is not None:
            result["stopped_epoch"] = self.epoch + 1
            result["stop_reason"] = self.stop_reason
        return result


# Metric sums (from Objective.metrics, plus the loop's "penalty") and the names they get.
_PER_EXAMPLE = {"loss": "loss", "correct": "accuracy", "sq_error": "mse", "penalty": "penalty"}


def summarize(prefix: str, sums: dict[str, torch.Tensor | float], *, task: str | None = None
              ) -> dict[str, float]:
    """Per-example means of an epoch's metric sums, keyed as in MLflow (`train/loss`, ...).

    A language model's loss is the mean per-token NLL, so its perplexity is exp(loss).
    """
    host = {k: float(v) for k, v in sums.items()}  # one sync per split per epoch
    count = max(host.pop("count", 1.0), 1.0)
    out = {f"{prefix}/{_PER_EXAMPLE.get(key, key)}": value / count
           for key, value in host.items()}
    if task == "language_model":
        out[f"{prefix}/perplexity"] = math.exp(min(out[f"{prefix}/loss"], 700.0))
    return out
