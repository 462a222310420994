"""Service-wide caps (settings `LAYERWISE_MAX_*`), checked at submission before anything a
spec asks for is allocated: the parameter count comes from a build on PyTorch's meta device,
a job's memory from the dry run's step (a large model's on the meta device too)."""

from __future__ import annotations

from dataclasses import dataclass

from services.contract.sections import OptimizerSpec
from services.contract.spec import ExperimentSpec
from services.contract.spec_errors import SpecError, SpecInvalid
from services.settings import Settings


@dataclass(frozen=True)
class SubmissionLimits:
    """The caps a submission is checked against; the defaults are the settings' defaults."""

    max_epochs: int = Settings.model_fields["max_epochs"].default
    max_parameters: int = Settings.model_fields["max_parameters"].default
    max_gpus_per_job: float = Settings.model_fields["max_gpus_per_job"].default
    max_dry_run_parameters: int = Settings.model_fields["max_dry_run_parameters"].default
    max_trials_per_sweep: int = Settings.model_fields["max_trials_per_sweep"].default
    max_sweep_dry_runs: int = Settings.model_fields["max_sweep_dry_runs"].default
    max_data_bytes: int = Settings.model_fields["max_data_bytes"].default
    max_classes: int = Settings.model_fields["max_classes"].default
    max_job_memory_bytes: int = Settings.model_fields["max_job_memory_bytes"].default

    @classmethod
    def of(cls, settings: Settings) -> SubmissionLimits:
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__})


class CapExceeded(SpecInvalid):
    """A spec over a service cap (as opposed to one that cannot run at all)."""


def spec_cap_errors(spec: ExperimentSpec, limits: SubmissionLimits) -> list[SpecError]:
    """The caps that need only the spec (epochs, GPUs)."""
    errors = []
    if spec.training.epochs > limits.max_epochs:
        errors.append(SpecError(("training", "epochs"), (
            f"{spec.training.epochs} epochs exceed the service cap of {limits.max_epochs} "
            "(LAYERWISE_MAX_EPOCHS)")))
    if spec.resources.gpus > limits.max_gpus_per_job:
        errors.append(SpecError(("resources", "gpus"), (
            f"{spec.resources.gpus:g} GPUs exceed the service cap of "
            f"{limits.max_gpus_per_job:g} (LAYERWISE_MAX_GPUS_PER_JOB)")))
    return errors


def check_parameter_cap(param_count: int, limits: SubmissionLimits) -> None:
    """Raises SpecInvalid at `model` when the model is over the parameter cap."""
    if param_count > limits.max_parameters:
        raise CapExceeded([SpecError(("model",), (
            f"the model has {param_count:,} parameters, over the service cap of "
            f"{limits.max_parameters:,} (LAYERWISE_MAX_PARAMETERS); make it smaller"))])


@dataclass(frozen=True)
class JobMemory:
    """A job's peak memory on the node it trains on, in bytes, by part: what the dry run's
    step measured on a few examples, scaled to the spec's batch. Not counted: the backward's
    transient gradients of activations, the allocator's slack, the interpreter and torch."""

    parameters: int  # parameters and buffers
    gradients: int
    optimizer_state: int
    activations: int  # what autograd keeps of one batch's forward for the backward
    data: int  # the splits, held as tensors on the device for the whole run

    @property
    def total(self) -> int:
        return (self.parameters + self.gradients + self.optimizer_state + self.activations
                + self.data)

    def as_record(self) -> dict[str, int]:
        """The parts and the total, in bytes, as the job's record keeps them."""
        return {**{name: getattr(self, name) for name in self.__dataclass_fields__},
                "total": self.total}

    def describe(self) -> str:
        parts = ", ".join(f"{name.replace('_', ' ')} {_size(getattr(self, name))}"
                          for name in self.__dataclass_fields__)
        return f"an estimated peak of {_size(self.total)} ({parts})"


def optimizer_state_factor(optimizer: OptimizerSpec) -> int:
    """The optimizer's state per trainable parameter, in parameters (torch.optim's buffers):
    Adam and AdamW two moments, SGD a momentum buffer if it has momentum, RMSprop its mean
    square and a momentum buffer if it has momentum."""
    if optimizer.name in ("adam", "adamw"):
        return 2
    if optimizer.name == "rmsprop":
        return 1 + (optimizer.momentum > 0)
    return int(optimizer.momentum > 0)


def check_memory_cap(memory: JobMemory, limits: SubmissionLimits,
                     node_memory: float | None = None) -> None:
    """Raises CapExceeded when the job's estimated peak is over the cap or over the memory of
    the cluster's largest node (Ray's `memory` resource; None: not known)."""
    over = [(limits.max_job_memory_bytes, "the service cap (LAYERWISE_MAX_JOB_MEMORY_BYTES) "
             f"of {_size(limits.max_job_memory_bytes)}")]
    if node_memory is not None:
        over.append((int(node_memory), f"the {_size(int(node_memory))} the cluster's largest "
                     "node has for tasks"))
    for cap, what in over:
        if memory.total > cap:
            part, loc, fix = max(_SHRINK, key=lambda each: getattr(memory, each[0]))
            raise CapExceeded([SpecError(loc, (
                f"this job needs {memory.describe()}, over {what}; most of it is "
                f"{part.replace('_', ' ')}: {fix}"))])


# Per part of JobMemory: where the 422 points and what shrinks it.
_SHRINK = (
    ("activations", ("training", "batch_size"), "lower training.batch_size, or the model's "
     "widths (hidden sizes, channels, sequence length)"),
    ("parameters", ("model",), "make the model smaller (fewer or narrower layers, fewer "
     "classes)"),
    ("gradients", ("model",), "make the model smaller (fewer or narrower layers)"),
    ("optimizer_state", ("optimizer", "name"), "make the model smaller, or use sgd (no state "
     "without momentum; Adam keeps two values per parameter)"),
    ("data", ("data",), "use a smaller data file or dataset (fewer rows, float32)"),
)


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,} bytes"
