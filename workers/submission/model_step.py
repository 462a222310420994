"""The dry run's model part: build the model without memory, count it against the cap, and take
one small training step, as the loop will.

- The model is first built on PyTorch's meta device (shapes, no storage, no arithmetic), so a
  model of any size costs nothing before its parameters are counted against the cap.
- Models up to `max_dry_run_parameters` are then built on the CPU and take one real step on
  DRY_RUN_EXAMPLES examples; larger ones take the step on the meta device (forward only: the
  backward mirrors its shapes at about three times its cost).
- A model that reads any length (a recurrent net) sees only the first DRY_RUN_STEPS steps.

What a step showed is kept by what determines it (the model config, dropout, the objective,
the data), so a sweep's values that change neither the model nor the data (the learning rate,
a regularizer, the seed) do not build and step the same model again.
"""

from __future__ import annotations

import json
from dataclasses import astuple, dataclass
from typing import Any

import torch

from models import build_model
from models.base import LayerwiseModel, ModelConfigError
from models.objectives import Objective
from models.registry import family
from services.byte_cache import ByteBoundedCache
from services.caps import SubmissionLimits, check_parameter_cap
from services.contract.applicability import ForwardFacts
from services.contract.spec import ExperimentSpec
from services.contract.spec_errors import SpecError, SpecInvalid
from workers.data import DataBundle
from workers.training.loop import summarize

DRY_RUN_EXAMPLES = 8
DRY_RUN_STEPS = 16
STEPS_KEPT = 16
STEPS_BYTES = 64_000_000  # real models here have at most max_dry_run_parameters


@dataclass
class Step:
    """A built model and what its one training step showed."""

    model: LayerwiseModel
    param_count: int
    on_meta: bool
    has_hidden: bool
    metric_names: list[str] | None  # loss, accuracy, ...; None: the step needs values

    def facts(self, spec: ExperimentSpec, *, has_val: bool) -> ForwardFacts:
        """The step's facts for this spec: the metric keys the loop will log."""
        if self.metric_names is None:
            return ForwardFacts(has_hidden=self.has_hidden, metric_keys=None)
        splits = ["train", "val"] if has_val else ["train"]
        keys = {f"{split}/{name}" for split in splits for name in self.metric_names}
        reg = spec.regularization
        if self.model.uses_gradients and (reg.l1 or reg.l2 or reg.activity_l1 or reg.activity_l2):
            keys.add("train/penalty")
        return ForwardFacts(has_hidden=self.has_hidden, metric_keys=frozenset(keys))


# A model on the meta device holds no memory; a real one its parameters and their gradients.
_steps: ByteBoundedCache[str, Step] = ByteBoundedCache(
    STEPS_BYTES, size_of=lambda step: 0 if step.on_meta else 8 * step.param_count,
    max_items=STEPS_KEPT)


def stepped_model(spec: ExperimentSpec, bundle: DataBundle, objective: Objective,
                  limits: SubmissionLimits, *, data_key: str) -> Step:
    """The spec's model, built and stepped once; from the cache when only other fields differ.

    Raises:
        SpecInvalid: the model cannot be built or run on this data, or is over the cap.
    """
    key = json.dumps([spec.model.model_dump(mode="json"), spec.regularization.dropout,
                      spec.loss, spec.task, data_key, astuple(limits)])
    step = _steps.get(key)
    if step is None:
        step = _step(spec, bundle, objective, limits)
        _steps.put(key, step)
    return step


def _step(spec: ExperimentSpec, bundle: DataBundle, objective: Objective,
          limits: SubmissionLimits) -> Step:
    model = _build(spec, bundle, device="meta")
    param_count = sum(p.numel() for p in model.parameters())
    check_parameter_cap(param_count, limits)
    on_meta = param_count > limits.max_dry_run_parameters
    if not on_meta:
        model = _build(spec, bundle, device="cpu")
    names = _one_step(spec, model, objective, bundle, on_meta=on_meta)
    return Step(model, param_count, on_meta, bool(model.hidden_activations()), names)


def _build(spec: ExperimentSpec, bundle: DataBundle, *, device: str) -> LayerwiseModel:
    try:
        with torch.device(device):
            return build_model(spec.model, bundle.shape(), dropout=spec.regularization.dropout)
    except ModelConfigError as exc:
        raise SpecInvalid([SpecError(("model", *exc.loc), exc.msg)]) from exc
    except (RuntimeError, ValueError, IndexError, TypeError, OverflowError) as exc:
        # torch's own refusal (a negative or huge dimension, a size that does not divide)
        raise SpecInvalid([SpecError(("model",), (
            f"this model config cannot be built for this data (input shape "
            f"{bundle.shape().input_shape}): {str(exc)[:300]}"))]) from exc


def dry_run_batch(spec: ExperimentSpec, bundle: DataBundle, on_meta: bool
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """A few training examples as the dry run feeds them: on the meta device for a large
    model, and cut to the first DRY_RUN_STEPS steps for a model that reads any length (a dry
    run through 10,000 steps took the API minutes)."""
    x = torch.as_tensor(bundle.x_train[:DRY_RUN_EXAMPLES])
    y = torch.as_tensor(bundle.y_train[:DRY_RUN_EXAMPLES])
    if family(spec.model.kind).any_length and x.ndim >= 2 and x.shape[1] > DRY_RUN_STEPS:
        if y.ndim >= 2 and y.shape[1] == x.shape[1]:  # many-to-many: a target per step
            y = y[:, :DRY_RUN_STEPS]
        x = x[:, :DRY_RUN_STEPS]
    return (torch.empty_like(x, device="meta") if on_meta else x), y


def _one_step(spec: ExperimentSpec, model: Any, objective: Objective, bundle: DataBundle, *,
              on_meta: bool) -> list[str] | None:
    """One training step's forward (and backward) on a few examples, as the loop runs it.
    Returns the names of the metrics the loop logs (loss, accuracy, ...).

    On the meta device the metrics are computed on zeros of the output's shape (their names
    do not depend on the values); a step that needs values there (an energy model's
    dynamics) returns None.
    """
    x, y = dry_run_batch(spec, bundle, on_meta)
    try:
        target = torch.empty_like(y, device="meta") if on_meta else y
        if model.uses_gradients:
            out = model.training_step(x, target, objective)
            if not on_meta:
                out["loss"].backward()
        else:
            with torch.no_grad():
                out = model.training_step(x, target, objective)
        output = out["output"].detach()
        if on_meta:
            output = torch.zeros(output.shape, dtype=output.dtype)
        sums = objective.metrics(output, y)
    except NotImplementedError:
        if not on_meta:
            raise
        return None
    except (RuntimeError, ValueError, IndexError) as exc:
        raise SpecInvalid([SpecError(("model",), f"the model cannot run on this data "
                                                 f"(input shape {tuple(x.shape[1:])}): "
                                                 f"{str(exc)[:300]}")]) from exc
    return [key.split("/", 1)[1] for key in summarize("train", sums, task=objective.task)]
