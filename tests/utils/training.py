"""Build a Trainer from a spec dict without MLflow or Ray, for tests of the loop's controls."""

from __future__ import annotations

from typing import Any

import torch

from services.contract.spec import ExperimentSpec
from workers.run import prepare, seed_everything, to_splits
from workers.training.build import build_trainer
from workers.training.callback_base import Callback, TrainerView
from workers.training.evaluation import Split
from workers.training.loop import Trainer

CPU = torch.device("cpu")


def trainer_for(spec: dict[str, Any], callbacks: list[Callback] | None = None) -> Trainer:
    """The Trainer that run_experiment would build for `spec` (builtin data), seeded."""
    parsed = ExperimentSpec.model_validate(spec)
    seed_everything(parsed.training.seed)
    bundle, objective, model = prepare(parsed, [], CPU)
    return build_trainer(parsed, model, objective, to_splits(bundle, CPU), device=CPU,
                         callbacks=callbacks or ())


class EpochRecorder(Callback):
    """Keeps every epoch's metrics and, on request, a copy of the weights after it."""

    def __init__(self, *, weights: bool = False):
        self.metrics: list[dict[str, float]] = []
        self.states: list[dict[str, torch.Tensor]] = []
        self.weights = weights

    def on_epoch_end(self, trainer: TrainerView, metrics: dict[str, float]) -> None:
        self.metrics.append(dict(metrics))
        if self.weights:
            self.states.append({k: v.clone() for k, v in trainer.model.state_dict().items()})

    def series(self, key: str) -> list[float]:
        return [m[key] for m in self.metrics]


__all__ = ["CPU", "EpochRecorder", "Split", "trainer_for"]
