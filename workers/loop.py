"""The one training loop every model kind runs through.

Mini-batches from tensors already on the device, the model's `training_step`, penalties,
backward, clipping, the optimizer, constraints; per epoch the train and validation metrics,
early stopping and the schedule. Diagnostics and logging hook in through `Callback` events.
"""

from __future__ import annotations

import copy
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from models.base import LayerwiseModel
from models.objectives import Objective
from models.regularizers import (
    activity_penalty,
    apply_max_norm,
    gaussian_noise,
    penalized_weights,
    weight_penalty,
)
from services.spec import ExperimentSpec
from workers.callbacks import Callback
from workers.optim import build_optimizer, build_schedule

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
    (0-based, current), epochs, device, last_loss (a device tensor).
    """

    def __init__(self, spec: ExperimentSpec, model: LayerwiseModel, objective: Objective,
                 splits: dict[str, Split], *, device: torch.device,
                 callbacks: list[Callback] | None = None):
        self.spec, self.model, self.objective, self.splits = spec, model, objective, splits
        self.device = device
        self.callbacks = callbacks or []
        self.epochs = spec.training.epochs
        self.step = 0
        self.epoch = 0
        self.reg = spec.regularization
        self.optimizer = (build_optimizer(spec.optimizer, list(model.parameters()))
                          if model.uses_gradients and any(True for _ in model.parameters())
                          else None)
        self.schedule = (build_schedule(spec.schedule, self.optimizer, self.epochs)
                         if self.optimizer else None)
        self._penalized = penalized_weights(model, include_biases=self.reg.penalize_biases)
        self._has_penalty = (self.reg.l1 > 0 or self.reg.l2 > 0) and bool(self._penalized)
        self._has_activity = self.reg.activity_l1 > 0 or self.reg.activity_l2 > 0
        self._generator = torch.Generator(device="cpu").manual_seed(spec.training.seed)
        self.best: dict[str, Any] = {}
        self.stopped_epoch: int | None = None

    # -- events --------------------------------------------------------------------------
    def _fire(self, event: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, event)(self, *args)

    # -- training ------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train, then evaluate. Returns the final metrics and the early-stopping facts.

        Raises:
            Diverged: the training loss became NaN or infinite.
        """
        self._fire("on_train_start")
        train = self.splits["train"]
        batch = len(train) if self.spec.training.batch_size == "full" else min(
            int(self.spec.training.batch_size), len(train))
        deadline = (time.monotonic() + self.spec.training.max_runtime_s
                    if self.spec.training.max_runtime_s else math.inf)
        metrics: dict[str, float] = {}
        for epoch in range(self.epochs):
            self.epoch = epoch
            started = time.perf_counter()
            sums = self._train_epoch(train, batch)
            metrics = self._epoch_metrics(sums, time.perf_counter() - started, len(train))
            self._fire("on_epoch_end", metrics)
            if self.schedule is not None:
                self.schedule.step()
            if self._should_stop(metrics) or time.monotonic() > deadline:
                self.stopped_epoch = self.epoch + 1
                break
        self._fire("on_train_end")
        return self._final_result(metrics)

    def _train_epoch(self, train: Split, batch: int) -> dict[str, torch.Tensor]:
        self.model.train()
        order = torch.randperm(len(train), generator=self._generator).to(self.device)
        sums: dict[str, torch.Tensor] = {}
        for start in range(0, len(train), batch):
            index = order[start:start + batch]
            x, y = train.x[index], train.y[index]
            if self.reg.input_noise_std > 0:
                x = gaussian_noise(x, self.reg.input_noise_std)
            output = self._step(x, y)
            for key, value in self.objective.metrics(output.detach(), y).items():
                sums[key] = sums[key] + value if key in sums else value
        return sums

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.optimizer is None:  # Hebbian storage, contrastive divergence, ...
            self._fire("on_before_update")
            with torch.no_grad():
                out = self.model.training_step(x, y, self.objective)
            self.last_loss = out["loss"]
            self.step += 1
            self._fire("on_step_end")
            return out["output"]
        with self._autocast():
            out = self.model.training_step(x, y, self.objective)
            loss = out["loss"]
            total = loss + self._penalties()
        self.last_loss = loss.detach()
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self._fire("on_after_backward")
        self._clip()
        self._fire("on_before_update")
        self.optimizer.step()
        if self.reg.max_norm is not None:
            apply_max_norm(self.model, self.reg.max_norm)
        self.step += 1
        self._fire("on_step_end")
        return out["output"]

    def _penalties(self) -> torch.Tensor | float:
        total: torch.Tensor | float = 0.0
        if self._has_penalty:
            total = weight_penalty(self._penalized, l1=self.reg.l1, l2=self.reg.l2)
        if self._has_activity:
            hidden = self.model.hidden_activations()
            if hidden:
                total = total + activity_penalty(hidden, l1=self.reg.activity_l1,
                                                 l2=self.reg.activity_l2)
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
    def evaluate(self, split: Split) -> dict[str, torch.Tensor]:
        self.model.eval()
        sums: dict[str, torch.Tensor] = {}
        for start in range(0, len(split), EVAL_CHUNK):
            x, y = split.x[start:start + EVAL_CHUNK], split.y[start:start + EVAL_CHUNK]
            for key, value in self.objective.metrics(self.model(x), y).items():
                sums[key] = sums[key] + value if key in sums else value
        return sums

    def _summarize(self, prefix: str, sums: dict[str, torch.Tensor]) -> dict[str, float]:
        host = {k: float(v) for k, v in sums.items()}  # one sync per split per epoch
        count = max(host.pop("count", 1.0), 1.0)
        out = {f"{prefix}/loss": host["loss"] / count}
        if "correct" in host:
            out[f"{prefix}/accuracy"] = host["correct"] / count
        if "sq_error" in host:
            out[f"{prefix}/mse"] = host["sq_error"] / count
        if self.objective.task == "language_model":  # the loss is the mean per-token NLL
            out[f"{prefix}/perplexity"] = math.exp(min(out[f"{prefix}/loss"], 700.0))
        return out

    def _epoch_metrics(self, train_sums: dict[str, torch.Tensor], seconds: float,
                       n_train: int) -> dict[str, float]:
        metrics = self._summarize("train", train_sums)
        if not math.isfinite(metrics["train/loss"]):
            raise Diverged(f"diverged at step {self.step}: the training loss is "
                           f"{metrics['train/loss']}; lower optimizer.lr or set "
                           "training.grad_clip_norm")
        if "val" in self.splits and len(self.splits["val"]):
            metrics.update(self._summarize("val", self.evaluate(self.splits["val"])))
        metrics.update(self.model.epoch_metrics())  # what non-gradient kinds measure
        if self.optimizer is not None:
            metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        metrics["throughput/samples_per_s"] = n_train / max(seconds, 1e-9)
        return metrics

    # -- early stopping --------------------------------------------------------------------
    def _should_stop(self, metrics: dict[str, float]) -> bool:
        stopping = self.reg.early_stopping
        value = metrics.get(stopping.monitor)
        if value is None:
            return False
        maximize = stopping.mode == "max" or (stopping.mode == "auto" and "accuracy" in
                                               stopping.monitor)
        score = value if maximize else -value
        if not self.best or score > self.best["score"] + stopping.min_delta:
            self.best = {"score": score, "epoch": self.epoch + 1, "value": value}
            if stopping.patience is not None and stopping.restore_best:
                self.best["state"] = copy.deepcopy(self.model.state_dict())
            return False
        return (stopping.patience is not None
                and self.epoch + 1 - self.best["epoch"] >= stopping.patience)

    def _final_result(self, last: dict[str, float]) -> dict[str, Any]:
        if "state" in self.best:
            self.model.load_state_dict(self.best["state"])
        result: dict[str, Any] = {}
        for name in ("val", "test"):
            if name in self.splits and len(self.splits[name]):
                result.update(self._summarize(name, self.evaluate(self.splits[name])))
        result["train/loss"] = last.get("train/loss")
        result["epochs_run"] = self.epoch + 1
        result["steps"] = self.step
        if self.best:
            result["best_epoch"] = self.best["epoch"]
        if self.stopped_epoch is not None:
            result["stopped_epoch"] = self.stopped_epoch
        return result
