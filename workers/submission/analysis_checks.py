"""Submission-time checks of the spec's `analysis` section against the data and the built
model: an analysis that cannot run is refused with the field and the fix, before training."""

from __future__ import annotations

from typing import Any

import torch

from models.base import DataShape, ModelConfigError
from models.builders import build_model
from services.contract.spec import ExperimentSpec
from workers.diagnostics.analysis.bptt import default_steps
from workers.diagnostics.analysis.prune import pruned_shape

Problem = tuple[tuple[str | int, ...], str]


def analysis_problems(spec: ExperimentSpec, model: Any, shape: DataShape, x: torch.Tensor, *,
                      has_val: bool) -> list[Problem]:
    """(loc, msg) for each analysis that cannot run. `x` is a few training inputs."""
    analysis = spec.analysis
    wanted = {"sensitivity": analysis.sensitivity,
              "prune_top_k": analysis.prune_top_k is not None,
              "adversarial": bool(analysis.adversarial.fgsm_eps or analysis.adversarial.deepfool),
              "bptt_norms": analysis.bptt_norms}
    if not model.uses_gradients:
        return [(("analysis", name), f"needs gradients, and model kind {_kind(spec)!r} "
                                     "learns without them; remove it")
                for name, on in wanted.items() if on]
    problems: list[Problem] = []
    if shape.extra.get("vocab_size"):
        problems += [(("analysis", name), "the inputs are token ids, which have no gradient; "
                                          "this analysis needs real-valued inputs")
                     for name in ("sensitivity", "prune_top_k", "adversarial") if wanted[name]]
    if wanted["adversarial"]:
        problems += _adversarial(shape, model, x)
    if wanted["prune_top_k"]:
        problems += _prune(spec, shape, has_val)
    if wanted["bptt_norms"]:
        problems += _bptt(spec, model, x)
    return problems


def _kind(spec: ExperimentSpec) -> str:
    return str(spec.model.kind)  # type: ignore[attr-defined]


def _adversarial(shape: DataShape, model: Any, x: torch.Tensor) -> list[Problem]:
    loc = ("analysis", "adversarial")
    if shape.task not in ("classification", "binary"):
        return [(loc, f"adversarial examples attack a classifier, and this run's task is "
                      f"{shape.task!r}; remove analysis.adversarial")]
    with torch.no_grad():
        z = model(x[:2])
    if z.dim() != 2:
        return [(loc, f"adversarial examples need one class per example, and this model "
                      f"answers with shape {tuple(z.shape[1:])} per example")]
    return []


def _prune(spec: ExperimentSpec, shape: DataShape, has_val: bool) -> list[Problem]:
    k = spec.analysis.prune_top_k
    assert k is not None
    loc = ("analysis", "prune_top_k")
    if k >= shape.input_dim:
        return [(loc, f"k = {k} keeps every input (there are {shape.input_dim}); use a k "
                      f"below {shape.input_dim}")]
    if not has_val:
        return [(("data", "val_fraction"), "analysis.prune_top_k compares validation metrics "
                                           "and needs validation data; set val_fraction > 0")]
    try:
        build_model(spec.model, pruned_shape(shape, k))
    except ModelConfigError as exc:
        return [(loc, f"a {_kind(spec)} model cannot be built on {k} flat inputs "
                      f"({exc.msg}); use a kind that reads flat features, such as mlp")]
    return []


def _bptt(spec: ExperimentSpec, model: Any, x: torch.Tensor) -> list[Problem]:
    loc = ("analysis", "bptt_norms")
    with torch.no_grad():
        found = model.states_through_time(x[:2])
    if found is None:
        return [(loc, f"model kind {_kind(spec)!r} has no hidden state through time; the "
                      "gradient through time is for recurrent and autoregressive nets")]
    z, states = found
    per_step = z.dim() == 3 and z.shape[1] == len(states)
    allowed = set(range(1, len(states) + 1)) if per_step else {len(states)}
    bad = [n for n in spec.analysis.bptt_steps if n not in allowed]
    if bad:
        which = f"1..{len(states)}" if per_step else f"only {len(states)}, the last"
        return [(("analysis", "bptt_steps"), f"steps {bad} are not output steps of this model "
                                             f"(steps: {which}; empty: "
                                             f"{default_steps(len(states), per_step)})")]
    return []
