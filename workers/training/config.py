"""What the training loop reads of a spec: its length, batches, seed and precision, the
optimizer and its schedule, and how dropout predicts at evaluation. Nothing else of the spec
reaches the loop; the regularizers reach it as callbacks (workers.training.build)."""

from __future__ import annotations

from dataclasses import dataclass

from services.contract.regularization_spec import DropoutInferenceSpec
from services.contract.sections import OptimizerSpec, ScheduleSpec, TrainingSpec
from services.contract.spec import ExperimentSpec


@dataclass(frozen=True)
class TrainingConfig:
    """The spec's sections the loop reads, as validated there."""

    training: TrainingSpec
    optimizer: OptimizerSpec
    schedule: ScheduleSpec
    dropout_inference: DropoutInferenceSpec

    @classmethod
    def of(cls, spec: ExperimentSpec) -> TrainingConfig:
        return cls(training=spec.training, optimizer=spec.optimizer, schedule=spec.schedule,
                   dropout_inference=spec.regularization.dropout_inference)
