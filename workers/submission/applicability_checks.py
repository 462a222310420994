"""Which settings of a spec apply to the model it builds and to its data: the checks that need
the built module, one dry-run step or the training inputs (the declared check, from the kinds'
declarations alone, is services/contract/applicability.py).

- structural: the built model has what each switched-on regularizer `needs` (weight matrices
  to penalize or constrain, hidden activations, dropout layers), and settings that act through
  backward and the optimizer need a kind that learns by gradient descent;
- data: input corruption fits the inputs (bit flips need binary inputs, Gaussian noise real
  ones), a monitored metric is logged, the training split's values are finite
  (`untrainable_data`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from models.base import LayerwiseModel
from models.mc_dropout import dropout_carriers
from models.regularizers import binary_pivot, constrained_weights, penalized_weights
from services.contract.applicability import (
    DROPOUT,
    MC_INFERENCE,
    MIN_LR,
    MONITOR,
    gradient_switches,
    is_set,
)
from services.contract.regularizer_kinds import REGULARIZER_KINDS, Loc, Need
from services.contract.spec import ExperimentSpec
from services.contract.spec_errors import SpecError
from workers.diagnostics.verdicts import Diagnosis


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


def _switched_on(spec: ExperimentSpec, need: Need) -> list[Loc]:
    """The switches set in `spec` of every regularizer that needs `need`."""
    return [loc for kind in REGULARIZER_KINDS if need in kind.needs
            for loc in kind.switched_on(spec)]


def data_errors(spec: ExperimentSpec, x_train: np.ndarray, has_val: bool, *,
                vocab_size: int | None = None) -> list[SpecError]:
    """Input corruption that does not fit the inputs; a validation monitor without validation
    data; a schedule floor above the learning rate. `vocab_size`: the data's, when its inputs
    may be token ids."""
    errors = [error for loc in _switched_on(spec, Need.REAL_INPUTS)
              for error in _noise_errors(loc, x_train, vocab_size)]
    for loc in _switched_on(spec, Need.BINARY_INPUTS):
        if binary_pivot(torch.as_tensor(x_train)) is None:
            sample = next((float(v) for v in np.unique(x_train)[:64] if v not in (0, 1, -1)),
                          None)
            errors.append(SpecError(loc, "bit-flip corruption needs binary inputs (every value "
                                         "in {0, 1} or in {-1, 1}); this data's inputs are not "
                                         "binary"
                                         + (f" (one is {sample:g})" if sample is not None else "")
                                         + "; use input_noise_std for real-valued inputs"))
    monitor = spec.regularization.early_stopping
    if monitor.patience is not None and monitor.monitor.startswith("val/") and not has_val:
        errors.append(SpecError(MONITOR, f"{monitor.monitor} needs validation data; set "
                                         "data.val_fraction > 0 or monitor a train/ metric"))
    schedule = spec.schedule
    if schedule.name in ("cosine", "warmup") and schedule.min_lr > spec.optimizer.lr:
        errors.append(SpecError(MIN_LR, f"the floor {schedule.min_lr} is above "
                                        f"optimizer.lr {spec.optimizer.lr}; lower it"))
    return errors


def untrainable_data(spec: ExperimentSpec, data: Diagnosis | None) -> list[SpecError]:
    """The `bad_data` findings at submission that no training survives (values that are not
    finite reach the loss at the first step): refused at the data's field, with the fix."""
    if data is None:
        return []
    loc: tuple[str, ...] = ("data", "path") if spec.data.source == "file" else ("data", "name")
    return [SpecError(loc, f"non_finite_data: {finding.evidence['fix_in_file']}")
            for finding in data.findings
            if finding.evidence.get("fault") == "non_finite_data"][:1]


def _noise_errors(loc: Loc, x_train: np.ndarray, vocab_size: int | None) -> list[SpecError]:
    """Gaussian input noise needs real-valued inputs: token ids are not (the data loads them as
    floats, (N, T) with a vocabulary), nor is any other non-float input."""
    if vocab_size and x_train.ndim == 2:
        return [SpecError(loc, "this data's inputs are token ids, which Gaussian noise would "
                               "turn into other tokens; set input_noise_std: 0 (use dropout "
                               "instead)")]
    if not np.issubdtype(x_train.dtype, np.floating):
        return [SpecError(loc, f"Gaussian noise needs real-valued inputs; this data's inputs "
                               f"are {x_train.dtype} (token ids?); remove it")]
    return []


# Whether the built model has what a need names, and the refusal when it has not.
_MODEL_NEEDS: dict[Need, tuple[Callable[[ExperimentSpec, LayerwiseModel, ForwardFacts], bool],
                               str]] = {
    Need.PENALIZED_WEIGHTS: (
        lambda spec, model, facts: bool(penalized_weights(
            model, include_biases=spec.regularization.penalize_biases)),
        "has no trainable weights to penalize; remove it"),
    Need.HIDDEN_ACTIVATIONS: (
        lambda spec, model, facts: facts.has_hidden,
        "has no hidden activations to penalize; remove it or choose a kind with hidden layers"),
    Need.CONSTRAINED_WEIGHTS: (
        lambda spec, model, facts: bool(constrained_weights(model)),
        "has no dense, convolutional, recurrent or attention weights to constrain; remove it"),
}


def model_errors(spec: ExperimentSpec, model: LayerwiseModel, facts: ForwardFacts
                 ) -> list[SpecError]:
    """Settings switched on that have nothing to act on in the built model."""
    kind = spec.model.kind
    if not model.uses_gradients:
        return [SpecError(loc, f"model kind {kind!r} does not learn by gradient descent, so "
                               f"{loc[-1]} has nothing to act on; remove it")
                for loc in gradient_switches() if is_set(spec, loc)
                ] + _dropout_errors(spec, model) + _monitor_errors(spec, facts)
    errors: list[SpecError] = []
    for need, (has, refusal) in _MODEL_NEEDS.items():
        switched = _switched_on(spec, need)
        if switched and not has(spec, model, facts):
            errors += [SpecError(loc, f"model kind {kind!r} {refusal}") for loc in switched]
    return errors + _dropout_errors(spec, model) + _monitor_errors(spec, facts)


def _dropout_errors(spec: ExperimentSpec, model: LayerwiseModel) -> list[SpecError]:
    if dropout_carriers(model):
        return []
    kind = spec.model.kind
    errors = []
    if is_set(spec, DROPOUT):
        errors.append(SpecError(DROPOUT, f"model kind {kind!r} built no dropout layer "
                                         "(nn.Dropout, or a recurrent or attention layer with "
                                         "dropout); remove it or choose a kind with hidden "
                                         "layers"))
    if is_set(spec, MC_INFERENCE):
        errors.append(SpecError(MC_INFERENCE, "mc inference averages over sampled dropout "
                                              "masks and this model has no dropout; set "
                                              "regularization.dropout > 0 or mode: expected"))
    return errors


def _monitor_errors(spec: ExperimentSpec, facts: ForwardFacts) -> list[SpecError]:
    stopping = spec.regularization.early_stopping
    if (stopping.patience is None or facts.metric_keys is None
            or stopping.monitor in facts.metric_keys):
        return []
    return [SpecError(MONITOR, f"{stopping.monitor!r} is not logged for this run; choose one "
                               f"of {sorted(facts.metric_keys)}")]


# -- an output and a loss that do not fit the data ---------------------------------------------
OUTPUT: Loc = ("model", "output")
LOSS: Loc = ("loss",)
TASK: Loc = ("task",)


def objective_refusals(spec: ExperimentSpec, task: str, classes: int) -> list[SpecError]:
    """When the spec's output, loss (or task) disagree, the field whose change fits the DATA
    (its task and number of classes), with both ways out; [] when the data does not decide
    it (the caller keeps the objective's own refusal).

    - more than 2 classes (or a classification): one label per example, a softmax over the
      classes; a sigmoid or hard-limit output is the wrong field, not the loss;
    - binary data: one output unit, a sigmoid; a softmax over one unit is always 1.
    """
    output, loss = getattr(spec.model, "output", "auto"), spec.loss
    if task == "classification" and output in ("sigmoid", "hardlimit"):
        keep = f"loss {loss!r}" if loss != "auto" else "the loss"
        return [SpecError(OUTPUT, f"model.output {output!r} does not fit this data's {classes} "
                                  f"classes (one label per example): set model.output: softmax "
                                  f"(or auto), which {keep} then fits; or, to keep the "
                                  f"{output} output, loss: mse")]
    if task == "binary" and output == "softmax":
        return [SpecError(OUTPUT, "a softmax over binary data's one output unit is always 1: "
                                  "set model.output: sigmoid (or auto) with loss: bce (or "
                                  "auto); or, to keep the softmax, task: classification (two "
                                  "output units) with loss: cross_entropy")]
    return []


def task_refusals(spec: ExperimentSpec, natural: str, classes: int) -> list[SpecError]:
    """A spec's task that does not fit its data, refused at the output and loss that carry
    it (a binary task's sigmoid and bce on data of more classes), with the change that fits
    the data; the task's own refusal stays next to them."""
    output, loss = getattr(spec.model, "output", "auto"), spec.loss
    if not (spec.task == "binary" and natural == "classification"):
        return []
    fit = (f"set task: classification (or auto), model.output: softmax and loss: "
           f"cross_entropy (or auto for both): this data has {classes} classes, and a binary "
           "task answers one yes or no")
    errors = []
    if output in ("sigmoid", "hardlimit"):
        errors.append(SpecError(OUTPUT, f"model.output {output!r} gives one unit for this "
                                        f"data's {classes} classes; {fit}"))
    if loss in ("bce", "perceptron"):
        errors.append(SpecError(LOSS, f"loss {loss!r} scores one yes or no, not one of "
                                      f"{classes} classes; {fit}"))
    return errors
