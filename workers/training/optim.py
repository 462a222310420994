"""Optimizers and learning-rate schedules from the training config."""

from __future__ import annotations

import math

import torch
from torch import nn

from models.base import LayerwiseModel
from services.contract.sections import OptimizerSpec, ScheduleSpec
from workers.training.config import TrainingConfig


def build_optimizer(spec: OptimizerSpec, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """The spec's optimizer, in PyTorch's fused implementation where it has one (SGD, Adam,
    AdamW): the same update in one kernel per step instead of several per parameter, a fraction of
    the step time of the unfused one (BENCHMARKS.md). RMSprop has no
    fused kernel and uses the multi-tensor one."""
    if spec.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=spec.lr, momentum=spec.momentum,
                                   weight_decay=spec.weight_decay, foreach=True)
    try:
        return _build(spec, params, fused=True)
    except RuntimeError:  # a device or dtype without fused kernels
        return _build(spec, params, fused=None)


def _build(spec: OptimizerSpec, params: list[nn.Parameter], *, fused: bool | None
           ) -> torch.optim.Optimizer:
    if spec.name == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum,
                               nesterov=spec.nesterov, weight_decay=spec.weight_decay,
                               fused=fused)
    optimizer = torch.optim.Adam if spec.name == "adam" else torch.optim.AdamW
    return optimizer(params, lr=spec.lr, betas=spec.betas, weight_decay=spec.weight_decay,
                     fused=fused)


def lr_factor(spec: ScheduleSpec, epoch: int, epochs: int, base_lr: float) -> float:
    """The multiplier of the base learning rate during `epoch` (0-based)."""
    floor = spec.min_lr / base_lr
    if spec.name == "step":
        return spec.gamma ** (epoch // spec.step_epochs)
    if spec.name == "exponential":
        return spec.gamma ** epoch
    if spec.name == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * epoch / max(1, epochs)))
    if spec.name == "warmup":
        if epoch < spec.warmup_epochs:
            return (epoch + 1) / (spec.warmup_epochs + 1)
        rest = max(1, epochs - spec.warmup_epochs)
        progress = (epoch - spec.warmup_epochs) / rest
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


def build_schedule(spec: ScheduleSpec, optimizer: torch.optim.Optimizer, epochs: int
                   ) -> torch.optim.lr_scheduler.LambdaLR:
    base_lr = optimizer.param_groups[0]["lr"]
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda epoch: lr_factor(spec, epoch, epochs, base_lr))


def build_optimization(config: TrainingConfig, model: LayerwiseModel
                       ) -> tuple[torch.optim.Optimizer | None,
                                  torch.optim.lr_scheduler.LambdaLR | None]:
    """The optimizer and its schedule; (None, None) for a kind that does not learn by gradient
    descent or has no parameters."""
    if not model.uses_gradients or not any(True for _ in model.parameters()):
        return None, None
    optimizer = build_optimizer(config.optimizer, list(model.parameters()))
    return optimizer, build_schedule(config.schedule, optimizer, config.training.epochs)
