"""The experiment spec (v1): the one contract between the user, the store, Ray and MLflow.

Structure is checked here (pydantic, `extra="forbid"` everywhere, `model` a discriminated union
on `kind`). What needs the data or the built model (dataset params, shapes, settings a kind does
not honour) is checked by `workers.submission.pipeline` at submission, with the same error format.
Each section is a module of its own (sections.py, regularization_spec.py, diagnostics_spec.py,
analysis_spec.py, tags.py).
"""

from __future__ import annotations

from pydantic import Field

from models.kinds.names import LossName
from models.registry import AnyModelConfig
from services.contract.analysis_spec import AnalysisSpec
from services.contract.diagnostics_spec import DiagnosticsSpec
from services.contract.expectations import EXPECT_DESCRIPTION, ExperimentExpect
from services.contract.regularization_spec import RegularizationSpec
from services.contract.sections import (
    DataSpec,
    OptimizerSpec,
    ResourcesSpec,
    ScheduleSpec,
    Strict,
    Task,
    TrainingSpec,
)
from services.contract.spec_hash import payload_hash
from services.contract.tags import Tags


class ExperimentSpec(Strict):
    """One experiment: the request body, the stored job, the Ray payload and the MLflow
    params. Every field has a default except `data` and `model`."""

    name: str | None = Field(None, max_length=250, description="the MLflow run name")
    project: str = Field("layerwise", min_length=1, max_length=250,
                         description="the MLflow experiment the run goes to")
    task: Task = Field("auto", description="what the targets are; auto: the data's own")
    data: DataSpec = Field(description="where the examples come from")
    model: AnyModelConfig = Field(description="the architecture: one of the model kinds, "
                                              "chosen by `kind`")
    loss: LossName = Field("auto", description="auto: the output's natural loss (softmax: "
                           "cross_entropy, sigmoid: bce, linear: mse, hardlimit: perceptron)")
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    regularization: RegularizationSpec = Field(default_factory=RegularizationSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    diagnostics: DiagnosticsSpec = Field(default_factory=DiagnosticsSpec)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    priority: int = Field(0, ge=-1000, le=1000, description="higher runs first; among "
                          "equal priorities the owners share the cluster, each owner's jobs in "
                          "submission order (LAYERWISE_QUEUE_POLICY)")
    tags: Tags = Field(default_factory=dict, max_length=64, description="MLflow run tags")
    expect: ExperimentExpect = Field(default_factory=list, description=EXPECT_DESCRIPTION)

    def spec_hash(self) -> str:
        """A stable hash of what determines the run (name, tags and priority excluded)."""
        return payload_hash(self.model_dump(mode="json", exclude={"name", "tags", "priority"}))

