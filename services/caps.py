"""Service-wide caps (settings `LAYERWISE_MAX_*`), checked at submission."""

from __future__ import annotations

from services.settings import Settings
from services.spec import ExperimentSpec
from services.validation import SpecError, SpecInvalid


def check_caps(spec: ExperimentSpec, param_count: int, settings: Settings) -> None:
    errors = []
    if spec.training.epochs > settings.max_epochs:
        errors.append(SpecError(("training", "epochs"), (
            f"{spec.training.epochs} epochs exceed the service cap of {settings.max_epochs} "
            "(LAYERWISE_MAX_EPOCHS)")))
    if param_count > settings.max_parameters:
        errors.append(SpecError(("model",), (
            f"the model has {param_count:,} parameters, over the service cap of "
            f"{settings.max_parameters:,} (LAYERWISE_MAX_PARAMETERS); make it smaller")))
    if spec.resources.gpus > settings.max_gpus_per_job:
        errors.append(SpecError(("resources", "gpus"), (
            f"{spec.resources.gpus:g} GPUs exceed the service cap of "
            f"{settings.max_gpus_per_job:g} (LAYERWISE_MAX_GPUS_PER_JOB)")))
    if errors:
        raise SpecInvalid(errors)
