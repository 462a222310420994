"""Which settings of a spec apply to the model it builds and to its data.

A setting that is switched on must have something to act on, or the spec is refused at
submission with the field and the fix; nothing is silently ignored. Three checks:
- declared: the family lists in `supports` (models/registry.py) the settings its builder
  honours (dropout placement, activity penalties, input corruption);
- structural: the built model has what a setting acts on (weight matrices to penalize or
  constrain, hidden activations, dropout layers), and settings that act through backward and
  the optimizer need a kind that learns by gradient descent;
- data: input corruption fits the inputs (bit flips need binary inputs), a monitored metric
  is logged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from models.base import LayerwiseModel
from models.mc_dropout import dropout_carriers
from models.registry import family
from models.regularizers import binary_pivot, constrained_weights, penalized_weights
from services.contract.spec import ExperimentSpec
from services.contract.spec_errors import SpecError

Loc = tuple[str, ...]
IsOn = Callable[[ExperimentSpec], bool]

_L1: tuple[Loc, IsOn] = (("regularization", "l1"), lambda s: s.regularization.l1 > 0)
_L2: tuple[Loc, IsOn] = (("regularization", "l2"), lambda s: s.regularization.l2 > 0)
_ACTIVITY: list[tuple[Loc, IsOn]] = [
    (("regularization", "activity_l1"), lambda s: s.regularization.activity_l1 > 0),
    (("regularization", "activity_l2"), lambda s: s.regularization.activity_l2 > 0),
]
_CONSTRAINTS: list[tuple[Loc, IsOn]] = [
    (("regularization", "max_norm"), lambda s: s.regularization.max_norm is not None),
    (("regularization", "unit_norm"), lambda s: s.regularization.unit_norm),
    (("regularization", "non_neg"), lambda s: s.regularization.non_neg),
]
_NOISE: tuple[Loc, IsOn] = (("regularization", "input_noise_std"),
                            lambda s: s.regularization.input_noise_std > 0)
_FLIP: tuple[Loc, IsOn] = (("regularization", "input_flip_prob"),
                           lambda s: s.regularization.input_flip_prob > 0)
_DROPOUT: tuple[Loc, IsOn] = (("regularization", "dropout"),
                              lambda s: s.regularization.dropout > 0)
_MC: tuple[Loc, IsOn] = (("regularization", "dropout_inference", "mode"),
                         lambda s: s.regularization.dropout_inference.mode == "mc")

# Setting names in ModelFamily.supports and the fields each one switches on.
_DECLARED: dict[str, list[tuple[Loc, IsOn]]] = {
    "dropout": [_DROPOUT],
    "activity_regularization": _ACTIVITY,
    "input_noise": [_NOISE, _FLIP],
}

# Fields that act through backward and the optimizer: nothing to act on in a kind that learns
# otherwise (Hebbian storage, contrastive divergence).
_GRADIENT_ONLY: list[tuple[Loc, IsOn]] = [
    _L1, _L2, *_ACTIVITY, *_CONSTRAINTS,
    (("training", "grad_clip_norm"), lambda s: s.training.grad_clip_norm is not None),
    (("training", "grad_clip_value"), lambda s: s.training.grad_clip_value is not None),
    (("training", "precision"), lambda s: s.training.precision != "fp32"),
    (("schedule", "name"), lambda s: s.schedule.name != "constant"),
    (("resources", "workers"), lambda s: s.resources.workers > 1),  # DDP averages gradients
]


def _kind(spec: ExperimentSpec) -> str:
    return spec.model.kind  # type: ignore[no-any-return, attr-defined]


def checked_fields() -> set[Loc]:
    """Every spec field these checks refuse when it has nothing to act on."""
    fields = [*_GRADIENT_ONLY, _NOISE, _FLIP, _DROPOUT, _MC,
              *(f for group in _DECLARED.values() for f in group)]
    return {loc for loc, _ in fields} | {("regularization", "early_stopping", "monitor"),
                                         ("schedule", "min_lr")}


@dataclass(frozen=True)
class ForwardFacts:
    """What one dry-run training step showed.

    Attributes:
        has_hidden: `hidden_activations()` returned tensors after the step.
        metric_keys: every metric the loop will log for this run (train/..., val/...); None
            when the step could not run (a large model checked on the meta device whose step
            needs values), and the checks that need them are left to the worker.
    """

    has_hidden: bool
    metric_keys: frozenset[str] | None


def declared_errors(spec: ExperimentSpec) -> list[SpecError]:
    """Settings switched on that the kind's family does not declare in `supports`."""
    kind = _kind(spec)
    supports = family(kind).supports
    return [SpecError(loc, f"model kind {kind!r} does not support {setting}; remove the "
                           "setting or choose a kind that has it (GET /v1/catalog lists each "
                           "kind's `supports`)")
            for setting, fields in _DECLARED.items() if setting not in supports
            for loc, is_on in fields if is_on(spec)]


def data_errors(spec: ExperimentSpec, x_train: np.ndarray, has_val: bool, *,
                vocab_size: int | None = None) -> list[SpecError]:
    """Input corruption that does not fit the inputs; a validation monitor without validation
    data; a schedule floor above the learning rate. `vocab_size`: the data's, when its inputs
    may be token ids."""
    errors = _noise_errors(spec, x_train, vocab_size)
    loc, is_on = _FLIP
    if is_on(spec) and binary_pivot(torch.as_tensor(x_train)) is None:
        sample = next((float(v) for v in np.unique(x_train)[:64] if v not in (0, 1, -1)), None)
        errors.append(SpecError(loc, "bit-flip corruption needs binary inputs (every value in "
                                     "{0, 1} or in {-1, 1}); this data's inputs are not binary"
                                     + (f" (one is {sample:g})" if sample is not None else "")
                                     + "; use input_noise_std for real-valued inputs"))
    monitor = spec.regularization.early_stopping
    if monitor.patience is not None and monitor.monitor.startswith("val/") and not has_val:
        errors.append(SpecError(("regularization", "early_stopping", "monitor"),
                                f"{monitor.monitor} needs validation data; set "
                                "data.val_fraction > 0 or monitor a train/ metric"))
    schedule = spec.schedule
    if schedule.name in ("cosine", "warmup") and schedule.min_lr > spec.optimizer.lr:
        errors.append(SpecError(("schedule", "min_lr"), f"the floor {schedule.min_lr} is above "
                                                        f"optimizer.lr {spec.optimizer.lr}; "
                                                        "lower it"))
    return errors


def _noise_errors(spec: ExperimentSpec, x_train: np.ndarray, vocab_size: int | None
                  ) -> list[SpecError]:
    """Gaussian input noise needs real-valued inputs: token ids are not (the data loads them as
    floats, (N, T) with a vocabulary), nor is any other non-float input."""
    loc, is_on = _NOISE
    if not is_on(spec):
        return []
    if vocab_size and x_train.ndim == 2:
        return [SpecError(loc, "this data's inputs are token ids, which Gaussian noise would "
                               "turn into other tokens; set input_noise_std: 0 (use dropout "
                               "instead)")]
    if not np.issubdtype(x_train.dtype, np.floating):
        return [SpecError(loc, f"Gaussian noise needs real-valued inputs; this data's inputs "
                               f"are {x_train.dtype} (token ids?); remove it")]
    return []


def model_errors(spec: ExperimentSpec, model: LayerwiseModel, facts: ForwardFacts
                 ) -> list[SpecError]:
    """Settings switched on that have nothing to act on in the built model."""
    kind = _kind(spec)
    if not model.uses_gradients:
        return [SpecError(loc, f"model kind {kind!r} does not learn by gradient descent, so "
                               f"{loc[-1]} has nothing to act on; remove it")
                for loc, is_on in _GRADIENT_ONLY if is_on(spec)
                ] + _dropout_errors(spec, model) + _monitor_errors(spec, facts)
    errors: list[SpecError] = []
    reg = spec.regularization
    if (reg.l1 > 0 or reg.l2 > 0) and not penalized_weights(
            model, include_biases=reg.penalize_biases):
        errors += [SpecError(loc, f"model kind {kind!r} has no trainable weights to penalize; "
                                  "remove it") for loc, is_on in (_L1, _L2) if is_on(spec)]
    if not facts.has_hidden:
        errors += [SpecError(loc, f"model kind {kind!r} has no hidden activations to "
                                  "penalize; remove it or choose a kind with hidden layers")
                   for loc, is_on in _ACTIVITY if is_on(spec)]
    if not constrained_weights(model):
        errors += [SpecError(loc, f"model kind {kind!r} has no dense, convolutional, recurrent "
                                  "or attention weights to constrain; remove it")
                   for loc, is_on in _CONSTRAINTS if is_on(spec)]
    return errors + _dropout_errors(spec, model) + _monitor_errors(spec, facts)


def _dropout_errors(spec: ExperimentSpec, model: LayerwiseModel) -> list[SpecError]:
    if dropout_carriers(model):
        return []
    kind = _kind(spec)
    errors = []
    loc, is_on = _DROPOUT
    if is_on(spec):
        errors.append(SpecError(loc, f"model kind {kind!r} built no dropout layer (nn.Dropout, "
                                     "or a recurrent or attention layer with dropout); "
                                     "remove it or choose a kind with hidden layers"))
    loc, is_on = _MC
    if is_on(spec):
        errors.append(SpecError(loc, "mc inference averages over sampled dropout masks and "
                                     "this model has no dropout; set regularization.dropout "
                                     "> 0 or mode: expected"))
    return errors


def _monitor_errors(spec: ExperimentSpec, facts: ForwardFacts) -> list[SpecError]:
    stopping = spec.regularization.early_stopping
    if (stopping.patience is None or facts.metric_keys is None
            or stopping.monitor in facts.metric_keys):
        return []
    return [SpecError(("regularization", "early_stopping", "monitor"),
                      f"{stopping.monitor!r} is not logged for this run; choose one of "
                      f"{sorted(facts.metric_keys)}")]
