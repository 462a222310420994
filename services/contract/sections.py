"""The spec's plain sections: the data, the optimizer and its schedule, the loop's settings
and the resources a job asks for. Each section refuses unknown fields, NaN, infinities and NUL
characters (`Strict`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from models.config import SEED_MAX, StrictConfig

Task = Literal["auto", "classification", "binary", "regression", "sequence", "language_model",
              "reconstruction", "recall"]


class Strict(StrictConfig):
    """A spec section: unknown fields, NaN, infinities and NUL characters refused."""


class DataSpec(Strict):
    """The data: a built-in generator by name, or a file below a data root; split into
    train, validation and test sets deterministically."""

    source: Literal["builtin", "file"] = Field(
        "builtin", description="builtin: a generated dataset by `name`; file: `path`")
    name: str | None = Field(None, description="built-in dataset (GET /v1/catalog lists them)")
    path: str | None = Field(None, description="file below one of LAYERWISE_DATA_ROOTS "
                                               "(.npz with x, y; .csv with a target column)")
    params: dict[str, Any] = Field(default_factory=dict, description="the built-in dataset's "
                                   "params (see the datasets below)")
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="share held out for "
                                "validation (unless the .npz gives x_val, y_val)")
    test_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="share held out for the "
                                 "test metrics, evaluated once at the end")
    standardize: Literal["none", "inputs", "targets", "both"] = Field(
        "none", description="rescale to mean 0, std 1 per feature, fitted on the training split "
        "and applied to every split: inputs, a regression's targets (its losses are then on the "
        "standardized scale), or both; the fitted mean and std are logged with the run "
        "(standardization.json)")

    @model_validator(mode="after")
    def _source_fields(self) -> DataSpec:
        if self.source == "builtin" and not self.name:
            raise ValueError("a builtin dataset needs `name` (GET /v1/catalog lists them)")
        if self.source == "file" and not self.path:
            raise ValueError("a file dataset needs `path`, relative to a data root")
        if self.source == "file" and self.name:
            raise ValueError("`name` is for builtin datasets; a file dataset has only `path`")
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must leave at least 10% for training")
        return self


class OptimizerSpec(Strict):
    """The optimizer (torch.optim) and its settings."""

    name: Literal["sgd", "adam", "adamw", "rmsprop"] = Field("sgd", description="optimizer")
    lr: float = Field(0.1, gt=0.0, le=10.0, description="learning rate (the schedule's start)")
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="sgd and rmsprop")
    nesterov: bool = Field(False, description="sgd with momentum > 0")
    weight_decay: float = Field(0.0, ge=0.0, description="the optimizer's decoupled or coupled "
                                                         "decay; distinct from regularization.l2")
    betas: tuple[float, float] = Field((0.9, 0.999), description="adam and adamw")

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> OptimizerSpec:
        if self.nesterov and (self.name != "sgd" or self.momentum <= 0):
            raise ValueError("nesterov needs name: sgd and momentum > 0")
        return self


class ScheduleSpec(Strict):
    """The learning rate over epochs."""

    name: Literal["constant", "step", "exponential", "cosine", "warmup"] = Field(
        "constant", description="learning-rate schedule, stepped once per epoch")
    step_epochs: int = Field(10, ge=1, description="step: decay every this many epochs")
    gamma: float = Field(0.1, gt=0.0, le=1.0, description="step and exponential: decay factor")
    warmup_epochs: int = Field(1, ge=0, description="warmup: linear ramp length, then cosine")
    min_lr: float = Field(0.0, ge=0.0, description="cosine and warmup: the floor")


MAX_EPOCHS = 100_000  # the contract's bound; the service's own cap is LAYERWISE_MAX_EPOCHS


class TrainingSpec(Strict):
    """The loop's length, batches, seed, gradient clipping and precision."""

    epochs: int = Field(20, ge=1, le=MAX_EPOCHS, description="passes over the training set "
                        "(capped by LAYERWISE_MAX_EPOCHS)")
    batch_size: int | Literal["full"] = Field(64, description="examples per step, or 'full' "
                                                              "for full-batch gradient descent")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="seeds torch and numpy (below 2^32)")
    grad_clip_norm: float | None = Field(None, gt=0.0, description="rescale the gradient to "
                                                                   "this total L2 norm when "
                                                                   "it is larger")
    grad_clip_value: float | None = Field(None, gt=0.0, description="clip each gradient "
                                                                    "element to [-v, v]")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="autocast dtype of the forward pass; fp16 scales the loss")
    max_runtime_s: float | None = Field(None, gt=0.0, description="stop after the epoch that "
                                                                  "passes this many seconds")

    @model_validator(mode="after")
    def _positive_batch(self) -> TrainingSpec:
        if isinstance(self.batch_size, int) and self.batch_size < 1:
            raise ValueError("batch_size must be >= 1, or 'full' for full-batch descent")
        return self


# Ray's custom resource names: a word (CPU, GPU and memory are Ray's own, asked for with
# cpus and gpus).
ResourceName = Annotated[str, Field(min_length=1, max_length=64,
                                    pattern=r"^[A-Za-z_][A-Za-z0-9_.:-]*$")]
RAY_OWN_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")


class ResourcesSpec(Strict):
    """What one job asks Ray for; a request no node could satisfy is refused with 422."""

    cpus: float = Field(1.0, gt=0.0, le=512, description="Ray num_cpus; also torch's threads")
    gpus: float = Field(0.0, ge=0.0, le=64, description="Ray num_gpus; fractions share a GPU")
    custom: dict[ResourceName, Annotated[float, Field(ge=0.0, le=1e9)]] = Field(
        default_factory=dict, max_length=16, description=(
        "Ray custom resources the job needs, e.g. {worker_node: 1} to land on nodes started "
        "with --resources='{\"worker_node\": 1}'"))
    workers: int = Field(1, ge=1, le=256, description=(
        "data-parallel training workers (Ray Train, DDP); cpus, gpus and custom are per "
        "worker; rank 0 logs"))

    @model_validator(mode="after")
    def _custom_not_ray_own(self) -> ResourcesSpec:
        own = sorted(set(self.custom) & set(RAY_OWN_RESOURCES))
        if own:
            raise ValueError(f"custom resources {own} are Ray's own; ask for CPUs and GPUs "
                             "with cpus and gpus, and remove them from custom")
        return self
