"""Fixes: spec changes by dotted path, chosen from the spec at hand and kept only when the
changed spec is still valid (it parses, and the kind supports every setting it switches on).

Each helper proposes one change, or nothing when the spec has no such field or already has
that value; `compose` keeps the proposals that validate together.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import ValidationError

from services.contract.applicability import declared_errors
from services.contract.spec import ExperimentSpec
from services.contract.tags import STORED

Fix = dict[str, Any]
SATURATING = ("sigmoid", "tanh", "arctan", "step")
POOR_INITS = ("zeros", "small_normal")


def value(spec: ExperimentSpec, path: str) -> Any:
    node: Any = spec
    for part in path.split("."):
        if not hasattr(node, part):
            return None
        node = getattr(node, part)
    return node


def has(spec: ExperimentSpec, path: str) -> bool:
    head, _, name = path.rpartition(".")
    node = value(spec, head) if head else spec
    return node is not None and name in type(node).model_fields


def apply(spec: ExperimentSpec, fix: Fix) -> ExperimentSpec:
    """The spec with `fix` applied. Raises ValueError when the result is not a valid spec."""
    payload = copy.deepcopy(spec.model_dump(mode="json"))
    for path, new in fix.items():
        node = payload
        *parents, name = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[name] = new
    try:
        changed = ExperimentSpec.model_validate(payload, context=STORED)  # a running job's
    except ValidationError as exc:
        raise ValueError(str(exc)) from exc
    errors = declared_errors(changed)
    if errors:
        raise ValueError(errors[0].msg)
    return changed


def compose(spec: ExperimentSpec | None, *proposals: Fix) -> Fix:
    """The union of the proposals that, added in order, keep the spec valid."""
    fix: Fix = {}
    if spec is None:
        return fix
    for proposal in proposals:
        if not proposal:
            continue
        try:
            apply(spec, {**fix, **proposal})
        except ValueError:
            continue
        fix.update(proposal)
    return fix


def _change(spec: ExperimentSpec, path: str, new: Any) -> Fix:
    return {path: new} if has(spec, path) and value(spec, path) != new else {}


def activation(spec: ExperimentSpec, new: str) -> Fix:
    return _change(spec, "model.activation", new)


def random_init(spec: ExperimentSpec, new: str = "glorot_normal") -> Fix:
    """A random init in place of a zero or constant-like one."""
    return _change(spec, "model.init", new) if value(spec, "model.init") in POOR_INITS else {}


def glorot(spec: ExperimentSpec) -> Fix:
    return _change(spec, "model.init", "glorot_normal")


def he(spec: ExperimentSpec) -> Fix:
    """He init, the one matched to ReLU, unless the spec has a He init already."""
    if value(spec, "model.init") in ("he_normal", "he_uniform"):
        return {}
    return _change(spec, "model.init", "he_normal")


def skips(spec: ExperimentSpec) -> Fix:
    """Residual skips for a plain deep net of a kind that has them."""
    if has(spec, "model.residual"):
        return _change(spec, "model.residual", True)
    if value(spec, "model.skip") == "none":
        return {"model.skip": "identity"}
    return {}


def lr(spec: ExperimentSpec, factor: float) -> Fix:
    current = spec.optimizer.lr
    return {"optimizer.lr": float(f"{min(10.0, current * factor):.3g}")}


def clip(spec: ExperimentSpec) -> Fix:
    current = spec.training.grad_clip_norm
    return {"training.grad_clip_norm": 1.0} if current is None or current > 1.0 else {}


def adam(spec: ExperimentSpec) -> Fix:
    if spec.optimizer.name in ("adam", "adamw"):
        return {}
    fix: Fix = {"optimizer.name": "adam", "optimizer.lr": 0.001}
    return fix | ({"optimizer.nesterov": False} if spec.optimizer.nesterov else {})


def dropout(spec: ExperimentSpec) -> Fix:
    return {"regularization.dropout": 0.2} if spec.regularization.dropout == 0 else {}


def l2(spec: ExperimentSpec) -> Fix:
    return {"regularization.l2": 1e-4} if spec.regularization.l2 == 0 else {}


def early_stopping(spec: ExperimentSpec) -> Fix:
    if spec.regularization.early_stopping.patience is not None:
        return {}
    return {"regularization.early_stopping.patience": 5}


def is_saturating(spec: ExperimentSpec | None) -> bool:
    return spec is not None and value(spec, "model.activation") in SATURATING
