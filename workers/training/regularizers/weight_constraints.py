"""Constraints on each unit's incoming weights, projected after every optimizer step
(`regularization.max_norm`, `unit_norm`, `non_neg`)."""

from __future__ import annotations

import torch

from models.base import LayerwiseModel
from models.regularizers import apply_constraints, constrained_weights
from services.contract.regularizer_kinds import regularizer_kind
from services.contract.spec import ExperimentSpec
from workers.training.callback_base import Callback, TrainerView
from workers.training.regularizers.base import Regularizer


class WeightConstraints(Callback):
    """Projects `weights` onto the constraint set right after the optimizer changed them."""

    def __init__(self, weights: list[torch.Tensor], *, max_norm: float | None, unit_norm: bool,
                 non_neg: bool):
        self.weights = weights
        self.max_norm, self.unit_norm, self.non_neg = max_norm, unit_norm, non_neg

    def adjust_weights(self, trainer: TrainerView) -> None:
        apply_constraints(self.weights, max_norm=self.max_norm, unit_norm=self.unit_norm,
                          non_neg=self.non_neg)


def _build(spec: ExperimentSpec, model: LayerwiseModel, train_x: torch.Tensor
           ) -> Callback | None:
    reg = spec.regularization
    weights = constrained_weights(model)
    return WeightConstraints(weights, max_norm=reg.max_norm, unit_norm=reg.unit_norm,
                             non_neg=reg.non_neg) if weights else None


REGULARIZER = Regularizer(kind=regularizer_kind("weight_constraints"), build=_build)
