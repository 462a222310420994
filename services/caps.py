"""Service-wide caps (settings `LAYERWISE_MAX_*`), checked at submission before anything a
spec asks for is allocated: the parameter count comes from a build on PyTorch's meta device."""

from __future__ import annotations

from dataclasses import dataclass

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
