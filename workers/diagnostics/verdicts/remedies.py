"""Remedies: for each verdict, the fixes worth trying, strongest first (AutoTrainer's table of
solutions per problem), one table for every verdict and both families of kinds (`TABLE` for
those that learn by gradients, `NO_GRADIENT_TABLE` for Hopfield and RBM). The checks only
say what they found; a finding's `fix` is the first candidate here and `alternatives` the
rest, which a repair tries in order when the one before did not help
(`workers.submission.repair`). A run that diverged in the loop gets its fix here too.

Every candidate is a set of spec changes that keeps the spec valid (`fixes.compose` drops the
parts a kind does not support), candidates are distinct and none is empty. A learning rate is
moved to the optimizer's usual rate (`REFERENCE_LR`) when it is far from it, not by a fixed
factor: a rate of 1e-6 raised tenfold still does not learn, and one of 0.5 under Adam lowered
tenfold still kills units.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable

from cachetools import LRUCache

from services.contract.spec import ExperimentSpec
from services.contract.verdicts import Verdict
from workers.diagnostics.verdicts import fixes
from workers.diagnostics.verdicts.fixes import Fix
from workers.diagnostics.verdicts.progress import MIN_PACE
from workers.diagnostics.verdicts.record import Finding, RunRecord

# A rate that trains the lecture's nets with each optimizer (its usual default).
REFERENCE_LR = {"sgd": 0.1, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3}
FAR = 10.0  # a rate this many times above or below the reference counts as far from it
# The rates each optimizer is known to train the lecture's nets with: a fix proposes no rate
# outside them (a spec's rate outside them is moved in, to the usual one or the nearest end).
KNOWN_LR = {"sgd": (1e-3, 1.0), "adam": (1e-4, 1e-2), "adamw": (1e-4, 1e-2),
            "rmsprop": (1e-4, 1e-2)}
RAISE = 3.0  # a rate near the usual one is raised this many times (tenfold overshoots Adam)
MAX_CANDIDATES = 4
# The kinds without gradients have one fix per problem (their spec has few knobs): the
# first candidate that validates, no alternatives.
MAX_NO_GRADIENT_CANDIDATES = 1
STILL_UPDATE_RATIO = 1e-4  # steps that move the weights by less than this share barely train

Proposals = list[tuple[Fix, ...]]
Remedy = Callable[[ExperimentSpec, RunRecord, Finding], Proposals]


def candidates(finding: Finding, record: RunRecord) -> list[Fix]:
    """The fixes to try for `finding`, strongest first (none without a spec, or for a verdict
    no spec change addresses: `no_gradients`)."""
    spec = record.spec
    table = TABLE if record.uses_gradients else NO_GRADIENT_TABLE
    remedy = table.get(finding.verdict)
    if spec is None or remedy is None:
        return []
    limit = MAX_CANDIDATES if record.uses_gradients else MAX_NO_GRADIENT_CANDIDATES
    spec_key = spec.model_dump_json()
    found: list[Fix] = []
    for proposals in remedy(spec, record, finding):
        fix = within_known_rates(spec, _composed(spec, spec_key, proposals))
        if fix and fix not in found:
            found.append(fix)
        if len(found) == limit:
            break
    return found


# The live diagnosis asks again every judged epoch with the same spec; validating every
# candidate is most of a judgement's cost, and a composed fix depends only on the spec and
# the proposals.
_COMPOSED: LRUCache[tuple[str, str], Fix] = LRUCache(maxsize=1024)
_COMPOSED_LOCK = threading.Lock()  # sweeps judge several trials in one process


def _composed(spec: ExperimentSpec, spec_key: str, proposals: tuple[Fix, ...]) -> Fix:
    key = (spec_key, repr(proposals))
    with _COMPOSED_LOCK:
        cached = _COMPOSED.get(key)
    if cached is None:
        cached = fixes.compose(spec, *proposals)
        with _COMPOSED_LOCK:
            _COMPOSED[key] = cached
    return copy.deepcopy(cached)


def within_known_rates(spec: ExperimentSpec, fix: Fix) -> Fix:
    """`fix` with a new learning rate kept inside its optimizer's `KNOWN_LR` (the one the fix
    switches to, else the spec's); a rate the fix would then leave unchanged is dropped."""
    if "optimizer.lr" not in fix:
        return fix
    name = fix.get("optimizer.name", spec.optimizer.name)
    low, high = KNOWN_LR.get(name, (0.0, float("inf")))
    rate = min(high, max(low, float(fix["optimizer.lr"])))
    if rate == spec.optimizer.lr and name == spec.optimizer.name:
        return {k: v for k, v in fix.items() if k != "optimizer.lr"}
    return {**fix, "optimizer.lr": rate}


def _still(record: RunRecord) -> bool:
    """Whether the steps barely move the weights (the direction `_not_learning` tries first)."""
    ratio = record.update_ratio
    return ratio is not None and ratio < STILL_UPDATE_RATIO


def attach(findings: list[Finding], record: RunRecord) -> None:
    """Give each finding its candidates: the first as `fix`, the rest as `alternatives`."""
    for finding in findings:
        ranked = candidates(finding, record)
        finding.fix, finding.alternatives = (ranked[0], ranked[1:]) if ranked else ({}, [])


def reference_lr(spec: ExperimentSpec) -> Fix:
    """The optimizer's usual rate, when the spec's is `FAR` from it (either way)."""
    reference = REFERENCE_LR.get(spec.optimizer.name)
    current = spec.optimizer.lr
    if reference is None or reference / FAR < current < reference * FAR:
        return {}
    return {"optimizer.lr": reference}


def lower_lr(spec: ExperimentSpec) -> Fix:
    """Down to the usual rate when far above it, else a tenth."""
    reference = REFERENCE_LR.get(spec.optimizer.name, spec.optimizer.lr)
    if spec.optimizer.lr >= reference * FAR:
        return {"optimizer.lr": reference}
    return fixes.lr(spec, 0.1)


def raise_lr(spec: ExperimentSpec) -> Fix:
    """Up to the usual rate when below it, else `RAISE` times (within `KNOWN_LR`)."""
    reference = REFERENCE_LR.get(spec.optimizer.name, spec.optimizer.lr)
    if spec.optimizer.lr < reference:
        return {"optimizer.lr": reference}
    return fixes.lr(spec, RAISE)


def constant_schedule(spec: ExperimentSpec) -> Fix:
    """A schedule that has decayed the rate to almost nothing within the run, undone."""
    schedule = spec.schedule
    epochs = spec.training.epochs
    if schedule.name == "exponential":
        decay = schedule.gamma ** epochs
    elif schedule.name == "step":
        decay = schedule.gamma ** (epochs // schedule.step_epochs)
    else:
        return {}
    return {"schedule.name": "constant"} if decay < 1e-2 else {}


def relu_like(spec: ExperimentSpec) -> bool:
    return fixes.value(spec, "model.activation") in ("relu", "leaky_relu", "elu")


def random_init(spec: ExperimentSpec) -> Fix:
    return fixes.random_init(spec, "he_normal" if relu_like(spec) else "glorot_normal")


def rnn_cell(spec: ExperimentSpec) -> Fix:
    """A gated cell in place of a vanilla recurrent one (its gate keeps the state bounded)."""
    if fixes.value(spec, "model.cell") != "vanilla":
        return {}
    return {"model.cell": "lstm", "model.activation": "tanh"}


def far_above_usual(spec: ExperimentSpec) -> bool:
    """The rate is more than `FAR` times its optimizer's usual one: then it is the cause to fix
    first (the pathology suite's Adam at 0.1 kills ReLUs, lowered they live; at 0.01, 10x, the
    outside benchmark's dead nets were repaired by the activation, not the rate)."""
    reference = REFERENCE_LR.get(spec.optimizer.name)
    return reference is not None and spec.optimizer.lr > reference * FAR


def _diverged(spec: ExperimentSpec, record: RunRecord, finding: Finding) -> Proposals:
    """One setting each: the rate (down to the usual one, or a tenth), then clipping, then a
    rate far lower, then an optimizer that scales its own steps. A recurrent net's error is a
    product over its steps, which explodes at any rate: its rate and a clip are the one fix
    (the pathology suite's ReLU RNN at SGD 10 is still not learning at 0.1 unclipped, and
    diverges clipped at 10)."""
    if fixes.has(spec, "model.cell"):
        return [(lower_lr(spec), fixes.clip(spec)), (lower_lr(spec),),
                (fixes.adam(spec), fixes.clip(spec))]
    return [(lower_lr(spec),), (fixes.clip(spec),), (fixes.lr(spec, 0.01),),
            (fixes.adam(spec),)]


def _exploding(spec: ExperimentSpec, record: RunRecord, finding: Finding) -> Proposals:
    """One setting each: a rate far above the usual one is the cause before the activation
    (a ReLU RNN under Adam at 20x its usual rate still explodes with tanh's bounded steps);
    else a vanilla ReLU RNN's activation (tanh bounds its state), then clipping, the rate, a
    gated cell."""
    recurrent_relu = fixes.value(spec, "model.cell") == "vanilla" and relu_like(spec)
    tanh: tuple[Fix, ...] = (fixes.activation(spec, "tanh"),) if recurrent_relu else ()
    if far_above_usual(spec):
        return [(lower_lr(spec),), (fixes.clip(spec),), tanh, (rnn_cell(spec),),
                (fixes.adam(spec),)]
    return [tanh, (fixes.clip(spec),), (lower_lr(spec),), (rnn_cell(spec),),
            (fixes.adam(spec),)]


def _symmetric(spec: ExperimentSpec, record: RunRecord, finding: Finding) -> Proposals:
    return [(random_init(spec),), (fixes.glorot(spec),), ({"model.init": "orthogonal"},)]


def _dead_units(spec: ExperimentSpec, record: RunRecord, finding: Finding) -> Proposals:
    """One setting each: a zero or tiny init starts the units dead (a random one matched to
    the activation first: AutoTrainer's circle models, fixed by He init); a rate far above
    the usual one kills them (then the rate); else an activation whose units cannot die
    (ELU, then leaky ReLU), then the rate."""
    elu, leaky = fixes.activation(spec, "elu"), fixes.activation(spec, "leaky_relu")
    init = (random_init(spec),)
    if far_above_usual(spec):
        return [init, (lower_lr(spec),), (elu,), (leaky,)]
    return [init, (elu,), (lower_lr(spec),), (leaky,)]


def _saturated(spec: ExperimentSpec, record: RunRecord, finding: Finding) -> Proposals:
    """One setting each: a rate far above the usual one drives the units into saturation
    (fix it first); else an activation that does not saturate, then the rate, then an init
    that starts the units in their linear range."""
    relu, init = fixes.activation(spec, "relu"), fixes.glorot(spec)
    if far_above_usual(spec):
        return [(lower_lr(spec),), (relu,), (init,)]
    return [(relu,), (lower_lr(spec),), (init,)]


def gated_cell(spec: ExperimentSpec, cell: str) -> Fix:
    """A recurrent net's cell changed to `cell` (a gated one keeps the error through time);
    its activation set back to tanh only when the vanilla cell's was not (the gated cells
    have no other)."""
    if not fixes.has(spec, "model.cell") or fixes.value(spec, "model.cell") == cell:
        return {}
    tanh = {} if fixes.value(spec, "model.activation") in (None, "tanh") \
        else {"model.activation": "tanh"}
    return {"model.cell": cell, **tanh}


def _vanishing_through_time(spec: ExperimentSpec) -> Proposals:
    """The lecture's fix: a gated cell (LSTM, then GRU); an LSTM already: its forget gate
    opened wider at the start (the cell state then carries the error further back)."""
    wider = {"model.forget_bias": 3.0} if fixes.value(spec, "model.cell") == "lstm" \
        and (fixes.value(spec, "model.forget_bias") or 0.0) < 3.0 else {}
    return [(gated_cell(spec, "lstm"),), (gated_cell(spec, "gru"),), (wider,)]


def _vanishing(spec: ExperimentSpec, record: RunRecord, finding: Finding) -> Proposals:
    """One cause, one change: a saturating activation is the cause (ReLU, with the init
    matched to it); then the depth (skips); no clipping, a remedy of exploding."""
    if finding.evidence.get("phase") == "through_time":
        return _vanishing_through_time(spec)
    saturating = fixes.is_saturating(spec)
    deep = len(record.layers) >= 4
    relu = fixes.activation(spec, "relu") if saturating else {}
    he = fixes.he(spec) if relu else random_init(spec)
    return [(relu, he),
            (fixes.skips(spec) if deep else {},),
            (relu, fixes.skips(spec) if deep else {}, he),
            (fixes.adam(spec),)]


def _not_learning(spec: ExperimentSpec, record: RunRecord, finding: Finding) -> Proposals:
    """More epochs for a run still on its way; else, without a measured cause, the rate: a
    decayed schedule undone, a rate far from the usual one moved to it, then up before
    down."""
    # A rate near the usual one that does not learn is raised before it is lowered: on the
    # outside benchmark's tuning half a tenth of Adam's 1e-3 did not help, 3e-3 did.
    directions = [(raise_lr(spec),), (fixes.adam(spec),), (fixes.lr(spec, 0.1),)] \
        if _still(record) \
        else [(fixes.adam(spec),), (raise_lr(spec),), (fixes.lr(spec, 0.1),)]
    # Still on its way from the baseline at a steady pace (curves: needs_more_epochs): the
    # epochs it needs, ahead of any rate.
    more = finding.evidence.get("needs_more_epochs")
    longer = ({"training.epochs": spec.training.epochs + int(more)},) if more else ()
    return [(linear_output(spec, record),), longer, (constant_schedule(spec),),
            (reference_lr(spec),), *directions]


def linear_output(spec: ExperimentSpec, record: RunRecord) -> Fix:
    """A regression read through a bounded output (sigmoid, hard limit, softmax) cannot reach
    targets outside its range, whatever the rate: a linear output (the outside benchmark's
    deepfd-48251943, a sigmoid over signed targets)."""
    regression = (record.data is not None and record.data.task == "regression") or (
        record.baseline is not None and record.baseline.kind == "mean_predictor")
    bounded = fixes.value(spec, "model.output") in ("sigmoid", "hardlimit", "softmax")
    return {"model.output": "linear"} if regression and bounded else {}


def anneal(spec: ExperimentSpec) -> Fix:
    """A cosine decay of a constant rate: the early epochs keep their pace, the late ones their
    steps small enough to settle."""
    return {"schedule.name": "cosine"} if spec.schedule.name == "constant" else {}


def _unstable(spec: ExperimentSpec, record: RunRecord, finding: Finding) -> Proposals:
    # Damp before slowing: an oscillating run often ends well, and a rate lowered to the usual
    # one then ends worse in the same epochs (the pathology suite: 0.94 down to 0.85 on moons).
    return [(anneal(spec),), (fixes.lr(spec, 0.5),), (lower_lr(spec),), (fixes.adam(spec),)]


def _overfitting(spec: ExperimentSpec, record: RunRecord, finding: Finding) -> Proposals:
    """One regularizer at a time: dropout, then stopping at the best epoch, then weight decay,
    then a stronger dropout."""
    return [(fixes.dropout(spec),), (fixes.early_stopping(spec),), (fixes.l2(spec),),
            ({"regularization.dropout": 0.5},)]


def _slow(spec: ExperimentSpec, record: RunRecord, finding: Finding) -> Proposals:
    """Steps too small for the weights: a larger rate, then an optimizer that scales its
    steps per parameter."""
    return [(raise_lr(spec),), (fixes.adam(spec),), (fixes.lr(spec, 10.0),)]


# -- the kinds that learn without gradients ---------------------------------------------------
def rbm_rate(spec: ExperimentSpec, factor: float) -> Fix:
    """An RBM's own contrastive-divergence rate, scaled."""
    if not _is_rbm(spec):
        return {}
    return {"model.lr": float(f"{fixes.value(spec, 'model.lr') * factor:.3g}")}


def rbm_capacity(spec: ExperimentSpec) -> tuple[Fix, ...]:
    """More hidden units for an RBM stuck at its baseline (and more Gibbs steps when few)."""
    if not _is_rbm(spec):
        return ()
    hidden, k = fixes.value(spec, "model.hidden"), fixes.value(spec, "model.k")
    return ({"model.hidden": int(hidden * 2)}, {"model.k": k * 5} if k < 5 else {})


def _is_rbm(spec: ExperimentSpec) -> bool:
    return fixes.has(spec, "model.hidden") and spec.model.kind == "rbm"


def _energy_diverged(spec: ExperimentSpec, record: RunRecord, finding: Finding) -> Proposals:
    # A Hopfield net's storage has no rate to lower: no spec change.
    return [(rbm_rate(spec, 0.1),)]


def _energy_not_learning(spec: ExperimentSpec, record: RunRecord, finding: Finding
                         ) -> Proposals:
    """An RBM whose reconstruction does not improve: more capacity. A run that stays at its
    baseline: the rate (up when it creeps forward or barely moves its weights, down
    otherwise), then an RBM's capacity; a Hopfield net over capacity needs fewer patterns
    (data, not spec: no fix)."""
    if "reconstruction_error_by_epoch" in finding.evidence:
        return [rbm_capacity(spec)]
    progress = record.progress
    creeping = progress is not None and progress.pace > MIN_PACE
    up: Proposals = [(fixes.lr(spec, 10.0),), (fixes.adam(spec),)]
    return [*(up if creeping or _still(record) else [(fixes.lr(spec, 0.1),)]),
            rbm_capacity(spec)]


TABLE: dict[str, Remedy] = {
    Verdict.DIVERGED: _diverged, Verdict.EXPLODING: _exploding, Verdict.SYMMETRIC: _symmetric,
    Verdict.DEAD_UNITS: _dead_units, Verdict.SATURATED: _saturated,
    Verdict.VANISHING: _vanishing, Verdict.NOT_LEARNING: _not_learning,
    Verdict.UNSTABLE: _unstable, Verdict.OVERFITTING: _overfitting, Verdict.SLOW: _slow,
}
NO_GRADIENT_TABLE: dict[str, Remedy] = {
    Verdict.DIVERGED: _energy_diverged, Verdict.NOT_LEARNING: _energy_not_learning,
}


# -- the data's own faults (data_faults.py) ---------------------------------------------------
def standardize(spec: ExperimentSpec, part: str) -> Fix:
    """`data.standardize` extended by `part` (inputs, targets or both): both when the other
    part is standardized already."""
    current = spec.data.standardize
    want = part if current in ("none", part) else "both"
    return {} if current in (want, "both") else {"data.standardize": want}


# A scale fault's parts -> the `data.standardize` part that rescales them.
_SCALE_FAULTS = {"unscaled_inputs": "inputs", "unscaled_targets": "targets",
                 "unscaled_inputs_and_targets": "both"}


def _bad_data(spec: ExperimentSpec, record: RunRecord, finding: Finding) -> Proposals:
    """Scale faults are fixed in the spec (every unscaled part in one setting); the others
    only in the file (`fix_in_file`)."""
    part = _SCALE_FAULTS.get(str(finding.evidence.get("fault")))
    return [(standardize(spec, part),)] if part else []


TABLE[Verdict.BAD_DATA] = _bad_data
NO_GRADIENT_TABLE[Verdict.BAD_DATA] = _bad_data
