"""The dry run's model part: build the model without memory, count it against the cap, and take
one small training step, as the loop will.

- The model is first built on PyTorch's meta device (shapes, no storage, no arithmetic), so a
  model of any size costs nothing before its parameters are counted against the cap.
  Its initializers are skipped there: on the meta device they run through PyTorch's Python
  reference kernels (~15 ms of a ~20 ms build of a small MLP) to fill values that do not exist.
- The step measures what autograd keeps of its batch for the backward (`Footprint`), and the
  job's peak memory is checked against its cap then: a large model's on the meta device, so
  before anything of it is built for real; a small one's after its real step, which holds at
  most `max_dry_run_parameters` and a few examples (measuring it on the meta device instead
  cost ~3 ms more per model, and 1.3 s to warm up the meta kernels once per process).
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
import math
from collections.abc import Iterable
from dataclasses import astuple, dataclass
from typing import Any

import torch
from torch import nn
from torch.autograd.graph import saved_tensors_hooks
from torch.overrides import TorchFunctionMode

from models.base import LayerwiseModel, ModelConfigError
from models.objectives import Objective
from models.registry import model_kind
from services.byte_cache import ByteBoundedCache
from services.caps import (
    JobMemory,
    SubmissionLimits,
    check_memory_cap,
    check_parameter_cap,
    optimizer_state_factor,
)
from services.contract.spec import ExperimentSpec
from services.contract.spec_errors import SpecError, SpecInvalid
from workers.data import DataBundle
from workers.prepare import model_of
from workers.submission.applicability_checks import ForwardFacts
from workers.training.metrics import PENALTY, metric_keys

DRY_RUN_EXAMPLES = 8
DRY_RUN_STEPS = 16
STEPS_KEPT = 16
STEPS_BYTES = 64_000_000  # real models here have at most max_dry_run_parameters


@dataclass(frozen=True)
class LoggedMetrics:
    """The metrics the loop logs for a run, as one dry-run step showed them. The one place
    submission checks learn a metric's key from (an early-stopping monitor, a sweep's metric).

    Attributes:
        sums: the metric sums of the step's objective (loss, correct or sq_error, ...), which
            the loop's `metric_keys` names per split.
        task: the objective's task (a language model's loss also gives its perplexity).
        penalty: the loop adds its penalty sum to the training split's (a weight or activity
            penalty is on).
        model_keys: the keys the model logs itself each epoch (`epoch_metrics`).
    """

    sums: tuple[str, ...]
    task: str
    penalty: bool
    model_keys: tuple[str, ...]

    def keys(self, splits: Iterable[str]) -> list[str]:
        """Each split's keys (train/loss, ...), as the loop's `metric_keys` names them."""
        out = []
        for split in splits:
            penalty = (PENALTY,) if split == "train" and self.penalty else ()
            out += metric_keys(split, (*self.sums, *penalty), task=self.task)
            out += [key for key in self.model_keys if key.startswith(f"{split}/")]
        return out

    def of_run(self, spec: ExperimentSpec) -> list[str]:
        """What a run of `spec` ends with: each split's keys (the test split's once, at the
        end), the model's own keys, and how training went."""
        data = spec.data
        splits = ["train", *(["val"] if data.val_fraction > 0 or data.source == "file"
                             else []), *(["test"] if data.test_fraction > 0 else [])]
        stopping = spec.regularization.early_stopping
        best = ([] if stopping.patience is None
                else ["best_epoch", f"best/{stopping.monitor}"])  # stopped_epoch only if it stops
        return list(dict.fromkeys([*self.keys(splits), *self.model_keys, "epochs_run",
                                   "steps", "param_count", *best]))


@dataclass(frozen=True)
class Footprint:
    """What a model holds, measured by the dry run's step (on the meta device for a large
    model): what a job's memory is made of before the spec's batch size and optimizer
    (`memory`).

    Attributes:
        state_bytes: parameters and buffers.
        trainable_bytes: the parameters the optimizer updates (0: not by gradients).
        bytes_per_example: what autograd keeps of one example's forward for the backward
            (each tensor once, parameters not counted), the input and output included; a
            sequence cut for the dry run scaled up to its full length.
    """

    state_bytes: int
    trainable_bytes: int
    bytes_per_example: float

    def memory(self, spec: ExperimentSpec, bundle: DataBundle) -> JobMemory:
        """The job's peak memory for `spec`'s batch size and optimizer on this data."""
        n = len(bundle.x_train)
        batch = n if spec.training.batch_size == "full" else min(spec.training.batch_size, n)
        return JobMemory(
            parameters=self.state_bytes, gradients=self.trainable_bytes,
            optimizer_state=self.trainable_bytes * optimizer_state_factor(spec.optimizer),
            activations=math.ceil(self.bytes_per_example * batch), data=bundle.nbytes)


@dataclass
class Step:
    """A built model and what its one training step showed."""

    model: LayerwiseModel
    param_count: int
    footprint: Footprint
    on_meta: bool
    has_hidden: bool
    # The step's metric sums (their keys, and the objective's task that names them) and what
    # the model measured itself; None: the step needs values (a large model on the meta device).
    metric_sums: tuple[str, ...] | None
    task: str
    model_keys: tuple[str, ...] | None

    def logged(self, spec: ExperimentSpec) -> LoggedMetrics | None:
        """The metrics the loop will log for this spec, or None when the step could not tell."""
        if self.metric_sums is None or self.model_keys is None:
            return None
        reg = spec.regularization
        # The loop's penalty is the weight penalty plus the activity penalty of a model that
        # learns by gradient descent (a kind with nothing to penalize is refused).
        penalty = self.model.uses_gradients and bool(
            reg.l1 or reg.l2 or reg.activity_l1 or reg.activity_l2)
        return LoggedMetrics(self.metric_sums, self.task, penalty, self.model_keys)

    def facts(self, spec: ExperimentSpec, *, has_val: bool) -> ForwardFacts:
        """The step's facts for this spec: the metric keys the loop will log every epoch."""
        logged = self.logged(spec)
        keys = None if logged is None else frozenset(
            logged.keys(["train", "val"] if has_val else ["train"]))
        return ForwardFacts(has_hidden=self.has_hidden, metric_keys=keys)


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
    else:  # the batch size and the optimizer are not in the key
        check_memory_cap(step.footprint.memory(spec, bundle), limits)
    return step


def _step(spec: ExperimentSpec, bundle: DataBundle, objective: Objective,
          limits: SubmissionLimits) -> Step:
    model = _build(spec, bundle, device="meta")
    param_count = sum(p.numel() for p in model.parameters())
    check_parameter_cap(param_count, limits)
    on_meta = param_count > limits.max_dry_run_parameters
    if not on_meta:
        model = _build(spec, bundle, device="cpu")
    kept = _Kept(model)
    sums = _one_step(spec, model, objective, bundle, on_meta=on_meta, kept=kept)
    footprint = kept.footprint(model, bundle)
    check_memory_cap(footprint.memory(spec, bundle), limits)
    return Step(model, param_count, footprint, on_meta, bool(model.hidden_activations()),
                sums, objective.task, _model_keys(model, on_meta=on_meta))


class _Kept:
    """The tensors a training step keeps alive: its input and output, and what autograd saves
    of the forward for the backward (`hooks()`), each once, a view as its base. Parameters are
    left out: the footprint counts them as parameters."""

    def __init__(self, model: LayerwiseModel):
        self._params = {id(p) for p in model.parameters()}
        self._tensors: dict[int, torch.Tensor] = {}  # held until counted: no id is reused
        self.input_shape: tuple[int, ...] = (1,)

    def add(self, tensor: torch.Tensor) -> torch.Tensor:
        base = tensor if tensor._base is None else tensor._base
        if id(base) not in self._params:
            self._tensors[id(base)] = base
        return tensor

    def hooks(self) -> saved_tensors_hooks:
        return saved_tensors_hooks(self.add, _same)

    def footprint(self, model: LayerwiseModel, bundle: DataBundle) -> Footprint:
        examples = max(self.input_shape[0], 1)
        # A recurrent net keeps a step's tensors per step: a sequence cut for the dry run
        # (DRY_RUN_STEPS) is scaled to its full length.
        full = bundle.x_train.shape
        cut = len(full) >= 2 and len(self.input_shape) >= 2 and self.input_shape[1] < full[1]
        scale = full[1] / self.input_shape[1] if cut else 1.0
        return Footprint(
            state_bytes=sum(map(_nbytes, [*model.parameters(), *model.buffers()])),
            trainable_bytes=sum(_nbytes(p) for p in model.parameters() if p.requires_grad)
            if model.uses_gradients else 0,
            bytes_per_example=sum(map(_nbytes, self._tensors.values())) / examples * scale)


def _same(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


# What only fills values, in place, and returns the tensor it was given, whatever its shape.
# Initializers that check a shape first (xavier_*, kaiming_*, orthogonal_, eye_, ...) still
# run their checks: their fills come through here.
_FILLS = frozenset({
    nn.init.normal_, nn.init.uniform_, nn.init.trunc_normal_, nn.init.constant_,
    nn.init.ones_, nn.init.zeros_, torch.Tensor.normal_, torch.Tensor.uniform_,
    torch.Tensor.fill_, torch.Tensor.zero_})


class _NoFillsOnMeta(TorchFunctionMode):
    """Skips initializers on meta tensors: they hold no values, and filling them costs more
    than building the model (PyTorch runs them through its Python reference kernels)."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in _FILLS:
            # nn.init passes its tensor by keyword to __torch_function__
            tensor = args[0] if args else kwargs.get("tensor")
            if isinstance(tensor, torch.Tensor) and tensor.is_meta:
                return tensor
        return func(*args, **kwargs)


def _build(spec: ExperimentSpec, bundle: DataBundle, *, device: str) -> LayerwiseModel:
    try:
        if device == "meta":
            with torch.device(device), _NoFillsOnMeta():
                return model_of(spec, bundle)
        if torch.get_default_device() == torch.device(device):
            # torch.device(...) as a context sees every call of the build (~8 ms of a small
            # MLP's ~12 ms on the CPU): not needed for the device torch builds on anyway
            return model_of(spec, bundle)
        with torch.device(device):
            return model_of(spec, bundle)
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
    if model_kind(spec.model.kind).any_length and x.ndim >= 2 and x.shape[1] > DRY_RUN_STEPS:
        if y.ndim >= 2 and y.shape[1] == x.shape[1]:  # many-to-many: a target per step
            y = y[:, :DRY_RUN_STEPS]
        x = x[:, :DRY_RUN_STEPS]
    return (torch.empty_like(x, device="meta") if on_meta else x), y


def _one_step(spec: ExperimentSpec, model: Any, objective: Objective, bundle: DataBundle, *,
              on_meta: bool, kept: _Kept) -> tuple[str, ...] | None:
    """One training step's forward (and backward) on a few examples, as the loop runs it.
    Returns the keys of the step's metric sums (loss, correct, count, ...), which the loop's
    `metric_keys` names.

    On the meta device the metrics are computed on zeros of the output's shape (their keys
    do not depend on the values); a step that needs values there (an energy model's
    dynamics) returns None. What the step keeps alive goes into `kept` (for such a step,
    what it kept until it failed).
    """
    x, y = dry_run_batch(spec, bundle, on_meta)
    kept.input_shape = tuple(kept.add(x).shape)
    try:
        target = torch.empty_like(y, device="meta") if on_meta else y
        if model.uses_gradients:
            with kept.hooks():
                out = model.training_step(x, target, objective)
            if not on_meta:
                out["loss"].backward()
        else:
            with torch.no_grad():
                out = model.training_step(x, target, objective)
        output = kept.add(out["output"]).detach()
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
    return tuple(sums)


def _model_keys(model: LayerwiseModel, *, on_meta: bool) -> tuple[str, ...] | None:
    """The keys of what the model measures itself each epoch (an energy, a load), after the
    step; None on the meta device for a model that measures anything (that needs values)."""
    if type(model).epoch_metrics is LayerwiseModel.epoch_metrics:
        return ()
    if on_meta:
        return None
    return tuple(model.epoch_metrics())
