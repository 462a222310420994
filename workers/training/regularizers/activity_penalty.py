"""L1 and L2 penalties on the hidden activations (`regularization.activity_l1`,
`activity_l2`)."""

from __future__ import annotations

import torch

from models.base import LayerwiseModel
from models.regularizers import activity_penalty
from services.contract.regularizer_kinds import regularizer_kind
from services.contract.spec import ExperimentSpec
from workers.training.callback_base import Callback, TrainerView
from workers.training.regularizers.base import Regularizer


class ActivityPenalty(Callback):
    """Adds l1 * sum |h| + l2 * sum h^2 over the hidden units of the forward pass that just
    ran (averaged over the batch); nothing when the step kept no hidden activations."""

    def __init__(self, *, l1: float, l2: float):
        self.l1, self.l2 = l1, l2

    def penalty(self, trainer: TrainerView) -> torch.Tensor | None:
        hidden = trainer.model.hidden_activations()
        return activity_penalty(hidden, l1=self.l1, l2=self.l2) if hidden else None


def _build(spec: ExperimentSpec, model: LayerwiseModel, train_x: torch.Tensor) -> Callback:
    reg = spec.regularization
    return ActivityPenalty(l1=reg.activity_l1, l2=reg.activity_l2)


REGULARIZER = Regularizer(kind=regularizer_kind("activity_penalty"), build=_build)
