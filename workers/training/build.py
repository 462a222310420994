"""Composing a trainer for a spec: the spec's regularizers as callbacks (first, in the
registry's order: it fixes their random draws and lets early stopping restore the best weights
before the others' on_train_end), then the caller's (loggers, diagnostics, checkpoints), handed
to a `Trainer` that reads only the training config.

The one module of the engine that knows both the loop and the regularizers, so neither imports
the other."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from models.base import LayerwiseModel
from models.objectives import Objective
from services.contract.spec import ExperimentSpec
from workers.training.callback_base import Callback
from workers.training.config import TrainingConfig
from workers.training.data_parallel import DataParallel
from workers.training.evaluation import Split
from workers.training.loop import Trainer
from workers.training.regularizers.base import Regularizer
from workers.training.regularizers.registry import REGULARIZERS, build_regularizers


def build_trainer(spec: ExperimentSpec, model: LayerwiseModel, objective: Objective,
                  splits: dict[str, Split], *, device: torch.device,
                  callbacks: Sequence[Callback] = (), parallel: DataParallel | None = None,
                  regularizers: Sequence[Regularizer] = REGULARIZERS) -> Trainer:
    """The trainer `spec` asks for, with the `regularizers` it switches on ahead of
    `callbacks`.

    Raises:
        ValueError: a regularizer does not fit the data (bit flips of non-binary inputs), or
            data parallelism was asked of a kind that does not learn by gradient descent.
    """
    return Trainer(TrainingConfig.of(spec), model, objective, splits, device=device,
                   callbacks=[*build_regularizers(spec, model, splits["train"].x, regularizers),
                              *callbacks],
                   parallel=parallel)
