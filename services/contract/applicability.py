"""Which settings of a spec apply to the model kind it names: the check made from
declarations alone, before anything is built.

A setting that is switched on must have something to act on, or the spec is refused at
submission with the field and the fix; nothing is silently ignored. What each regularizer needs
is declared once, in services/contract/regularizer_kinds.py (`switches`, `honoured_as`,
`needs`, `gradient_only`), and what each model kind honours in models/kinds/ (`honours`). This
module checks the declarations (`declared_errors`); the checks that need the built model or the
data read the same declarations in workers/submission/applicability_checks.py.
"""

from __future__ import annotations

from models.kinds.honours import Honour
from models.registry import model_kind
from services.contract.regularizer_kinds import (
    REGULARIZER_KINDS,
    Loc,
    default_at,
    value_at,
)
from services.contract.spec import ExperimentSpec
from services.contract.spec_errors import SpecError

# Spec fields that are not a regularizer of the loop but still need something to act on: each
# one is on when it differs from its default, as a regularizer's switch is.
DROPOUT: Loc = ("regularization", "dropout")  # the builder places the dropout layers
MC_INFERENCE: Loc = ("regularization", "dropout_inference", "mode")  # needs dropout layers
# Fields that act through backward and the optimizer besides the regularizers declared
# `gradient_only`; DDP (resources.workers) averages gradients.
GRADIENT_SETTINGS: tuple[Loc, ...] = (
    ("training", "precision"), ("schedule", "name"), ("resources", "workers"))
# Fields the data and the forward step decide (see applicability_checks.data_errors).
MONITOR: Loc = ("regularization", "early_stopping", "monitor")
MIN_LR: Loc = ("schedule", "min_lr")


def is_set(spec: ExperimentSpec, loc: Loc) -> bool:
    """The field at `loc` differs from its default: the setting is switched on."""
    return bool(value_at(spec, loc) != default_at(spec, loc))


def honoured_switches() -> list[tuple[Honour, Loc]]:
    """Each field a model kind must honour to act on, with the setting it must honour."""
    return [(Honour.DROPOUT, DROPOUT)] + [
        (kind.honoured_as, loc) for kind in REGULARIZER_KINDS if kind.honoured_as is not None
        for loc in kind.switches]


def gradient_switches() -> list[Loc]:
    """Every field that has nothing to act on in a kind that does not learn by gradients."""
    return [loc for kind in REGULARIZER_KINDS if kind.gradient_only
            for loc in kind.switches] + list(GRADIENT_SETTINGS)


def checked_fields() -> set[Loc]:
    """Every spec field these checks refuse when it has nothing to act on."""
    switches = {loc for kind in REGULARIZER_KINDS if kind.needs or kind.honoured_as
                or kind.gradient_only for loc in kind.switches}
    return switches | set(GRADIENT_SETTINGS) | {DROPOUT, MC_INFERENCE, MONITOR, MIN_LR}


def declared_errors(spec: ExperimentSpec) -> list[SpecError]:
    """Settings switched on that the model kind does not declare it honours."""
    kind = spec.model.kind
    honours = model_kind(kind).honours
    by_setting = sorted(honoured_switches(), key=lambda pair: list(Honour).index(pair[0]))
    return [SpecError(loc, f"model kind {kind!r} does not support {setting}; remove the "
                           "setting or choose a kind that has it (GET /v1/catalog lists each "
                           "kind's `supports`)")
            for setting, loc in by_setting if setting not in honours and is_set(spec, loc)]
