"""The diagnosis engine on labelled synthetic runs: curves built to show each verdict (several
per verdict), healthy runs that must not alarm, the baselines, and that every fix is a valid
change of the run's spec."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from services.contract.diagnostics_spec import DiagnosisThresholds
from services.contract.spec import ExperimentSpec
from tests.utils.specs import mlp_spec
from workers.diagnostics.verdicts import (
    Baseline,
    Divergence,
    NormCurves,
    RunRecord,
    diagnose_record,
    fixes,
    measure_baseline,
)

LAYERS = ["layers.0", "layers.1", "layers.2", "output"]
PRIOR = Baseline("class_prior", 2.3, 0.1)


@pytest.fixture
def rng() -> np.random.Generator:
    """Each test's own noise, seeded: its data does not depend on which tests ran before."""
    return np.random.default_rng(0)


def _spec(**overrides: Any) -> ExperimentSpec:
    payload = mlp_spec(**overrides)
    if "kind" in overrides.get("model", {}):  # another kind: its own fields only
        payload["model"] = overrides["model"]
    return ExperimentSpec.model_validate(payload)


def _grads(rng: np.random.Generator, first: float | np.ndarray, steps: int = 200
           ) -> np.ndarray:
    first = np.broadcast_to(np.asarray(first, dtype=float), (steps,))
    base = np.column_stack([first, np.full(steps, 0.1), np.full(steps, 0.3), np.ones(steps)])
    return base * rng.uniform(0.8, 1.2, size=base.shape)


def _norms(grads: np.ndarray, total: np.ndarray | None = None,
           update_ratio: float | None = None) -> NormCurves:
    """The gradient norms; with `update_ratio`, update and weight norms that step each layer
    by that share of its (unit) weights."""
    total = np.sqrt((grads ** 2).sum(axis=1)) if total is None else total
    keys = [f"grad_norm/{layer}" for layer in LAYERS] + ["grad_norm/total"]
    columns = [grads, total]
    if update_ratio is not None:
        keys += [f"update_norm/{layer}" for layer in LAYERS]
        keys += [f"weight_norm/{layer}" for layer in LAYERS]
        columns += [np.full(grads.shape, update_ratio), np.ones(grads.shape)]
    return NormCurves(keys, np.arange(len(grads)), np.column_stack(columns))


def _learning(rng: np.random.Generator, epochs: int = 10, end: float = 0.6
              ) -> list[dict[str, float]]:
    """A classifier learning: accuracy up from chance, losses down, with noise. It ends
    halfway from chance to perfect, above the poor-fit line and below the good fit (gates):
    where a mechanism finding is still the verdict."""
    t = np.linspace(0, 1, epochs)
    acc = 0.1 + (end - 0.1) * (1 - np.exp(-5 * t)) + rng.normal(0, 0.005, epochs)
    loss = 2.3 * np.exp(-3 * t) + 0.1
    return [{"train/loss": float(l_ * 0.95), "val/loss": float(l_), "val/accuracy": float(a)}
            for l_, a in zip(loss, acc, strict=True)]


def _curve(train: np.ndarray, val: np.ndarray | None = None,
           acc: np.ndarray | None = None) -> list[dict[str, float]]:
    out = []
    for i, loss in enumerate(train):
        row = {"train/loss": float(loss)}
        if val is not None:
            row["val/loss"] = float(val[i])
        if acc is not None:
            row["val/accuracy"] = float(acc[i])
        out.append(row)
    return out


def _record(rng: np.random.Generator, *, grads: np.ndarray | None = None,
            epochs: list[dict[str, float]] | None = None,
            activations: dict[str, float] | None = None, weights: dict | None = None,
            spec: ExperimentSpec | None = None, baseline: Baseline | None = PRIOR,
            uses_gradients: bool = True, total: np.ndarray | None = None,
            update_ratio: float | None = None) -> RunRecord:
    grads = grads if grads is not None else _grads(rng, 0.3)
    return RunRecord(LAYERS, DiagnosisThresholds(),
                     norms=_norms(grads, total, update_ratio),
                     epochs=epochs if epochs is not None else _learning(rng),
                     activations=activations or {}, weights=weights or _random_rows(rng),
                     baseline=baseline, spec=spec or _spec(), uses_gradients=uses_gradients)


def _random_rows(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {layer: rng.normal(size=(32, 16)) for layer in LAYERS[:-1]}


def _assert_fixes_validate(diagnosis, spec: ExperimentSpec) -> None:
    for finding in diagnosis.findings:
        tried = [finding.fix, *finding.alternatives] if finding.fix else finding.alternatives
        assert all(tried) and len({repr(f) for f in tried}) == len(tried)  # distinct, none empty
        for fix in tried:
            changed = fixes.apply(spec, fix)  # raises when the spec would be invalid
            for path, value in fix.items():
                assert fixes.value(changed, path) == value


SIGMOID = {"model": {"hidden": [32, 32, 32], "activation": "sigmoid"}}
ZEROS = {"model": {"hidden": [32, 32, 32], "activation": "sigmoid", "init": "zeros"}}
PLAIN_RESNET = {"model": {"kind": "resnet", "depth": 6, "width": 16, "skip": "none"}}

# (label, record factory, expected verdict, verdicts that must be among the findings)
CASES = [
    ("healthy: learns, gradients even", lambda rng: _record(rng, ), "healthy", []),
    ("healthy: first layer 5e-3 early but learns", lambda rng: _record(rng,
        grads=_grads(rng, np.r_[np.full(20, 5e-3), np.full(180, 0.3)])), "healthy", []),
    ("healthy: noisy but falling loss", lambda rng: _record(rng, epochs=_curve(
        2.3 * np.exp(-np.arange(12) / 3) * rng.uniform(0.97, 1.03, 12) + 0.05,
        acc=np.linspace(0.1, 0.95, 12))), "healthy", []),
    ("healthy: a converged loss wobbling near zero", lambda rng: _record(rng, epochs=_curve(
        np.r_[np.geomspace(2.3, 0.01, 6), np.tile([0.008, 0.012], 4)],
        acc=np.r_[np.linspace(0.1, 0.99, 6), np.full(8, 0.99)])), "healthy", []),
    ("poor fit: levelling off a third of the way (40%)", lambda rng: _record(rng,
        epochs=_curve(np.linspace(2.3, 1.6, 12), acc=np.r_[np.linspace(0.1, 0.38, 6),
                                                           np.linspace(0.385, 0.4, 6)])),
     "not_learning", ["not_learning"]),
    ("healthy: a hard task levelling off at 60%", lambda rng: _record(rng, epochs=_curve(
        np.linspace(2.3, 1.2, 12), acc=np.r_[np.linspace(0.1, 0.58, 6),
                                             np.linspace(0.585, 0.6, 6)])), "healthy", []),
    ("healthy: regression well fitted", lambda rng: _record(rng,
        baseline=Baseline("mean_predictor", 1.0, None),
        epochs=_curve(np.linspace(1.0, 0.1, 8), val=np.linspace(1.0, 0.12, 8))), "healthy", []),
    ("vanishing over the run (sigmoid)", lambda rng: _record(rng, grads=_grads(rng, 1e-5),
                                                         spec=_spec(**SIGMOID)),
     "vanishing", ["vanishing"]),
    ("vanishing early, stuck at chance (plain resnet)", lambda rng: _record(rng,
        grads=_grads(rng, np.r_[np.full(20, 1.3e-3), np.full(180, 0.05)]),
        spec=_spec(**PLAIN_RESNET),
        epochs=_curve(np.full(10, 2.29), val=np.full(10, 2.29), acc=np.full(10, 0.15))),
     "vanishing", ["vanishing", "not_learning"]),
    ("vanishing with saturation: the cause first", lambda rng: _record(rng,
        grads=_grads(rng, 1e-5), spec=_spec(**SIGMOID),
        activations={"activation/saturated_fraction": 0.9,
                     "activation/saturated_fraction/layers.1.activation": 0.9}),
     "saturated", ["saturated", "vanishing"]),
    ("exploding: ratio", lambda rng: _record(rng, grads=_grads(rng, 1e4)), "exploding",
     ["exploding"]),
    ("exploding: growth", lambda rng: _record(rng, total=np.geomspace(1, 1e5, 200)), "exploding",
     ["exploding"]),
    ("exploding: non-finite", lambda rng: _record(rng, grads=np.where(
        np.arange(200)[:, None] == 150, np.inf, _grads(rng, 0.3))), "exploding", ["exploding"]),
    ("dead units", lambda rng: _record(rng, activations={
        "activation/dead_fraction": 0.8, "activation/dead_fraction/layers.0.activation": 0.9}),
     "dead_units", ["dead_units"]),
    ("symmetric: identical rows", lambda rng: _record(rng,
        spec=_spec(**ZEROS), weights={"layers.0": np.tile(rng.normal(size=16), (32, 1)),
                                      "layers.1": rng.normal(size=(32, 32))},
        epochs=_curve(np.full(6, 1.9), acc=np.full(6, 0.3))), "symmetric", ["symmetric"]),
    ("symmetric: all-zero rows", lambda rng: _record(rng,
        spec=_spec(**ZEROS), weights={"layers.1": np.zeros((32, 32))}), "symmetric",
     ["symmetric"]),
    ("not learning: classifier at chance", lambda rng: _record(rng, epochs=_curve(
        np.full(10, 2.30), val=np.full(10, 2.30), acc=rng.uniform(0.09, 0.12, 10))),
     "not_learning", ["not_learning"]),
    ("not learning: regression at the variance", lambda rng: _record(rng,
        baseline=Baseline("mean_predictor", 1.0, None),
        epochs=_curve(np.full(8, 1.0), val=np.full(8, 0.98))), "not_learning", ["not_learning"]),
    ("unstable: oscillating", lambda rng: _record(rng, epochs=_curve(
        np.tile([1.0, 1.6], 5), acc=np.linspace(0.4, 0.8, 10))), "unstable", ["unstable"]),
    ("unstable: spike", lambda rng: _record(rng, epochs=_curve(  # the accuracy falls with it
        np.r_[np.linspace(2.0, 0.3, 6), 5.0, 0.3, 0.25, 0.2],
        acc=np.r_[np.linspace(0.2, 0.7, 6), 0.3, 0.8, 0.85, 0.9])),
     "unstable", ["unstable"]),
    ("slow: creeping forward", lambda rng: _record(rng, epochs=_curve(
        np.linspace(2.3, 2.0, 10), val=np.linspace(2.3, 2.0, 10),
        acc=np.linspace(0.1, 0.18, 10)), update_ratio=1e-4), "not_learning",
     ["not_learning", "slow"]),
    ("slow: past chance at a steady crawl", lambda rng: _record(rng, epochs=_curve(
        np.linspace(2.3, 2.0, 10), val=np.linspace(2.3, 2.0, 10),
        acc=np.linspace(0.1, 0.21, 10)), update_ratio=1e-4), "slow", ["slow"]),
    ("slow: regression creeping down", lambda rng: _record(rng,
        baseline=Baseline("mean_predictor", 1.0, None),
        epochs=_curve(np.linspace(1.0, 0.88, 10), val=np.linspace(1.0, 0.88, 10)),
        update_ratio=1e-4), "slow", ["slow"]),
    ("healthy: the same crawl with steps of a usual size is unfinished", lambda rng: _record(
        rng, epochs=_curve(np.linspace(2.3, 2.0, 10), val=np.linspace(2.3, 2.0, 10),
                           acc=np.linspace(0.1, 0.21, 10)), update_ratio=1e-2), "healthy", []),
    ("overfitting: val rises as train falls", lambda rng: _record(rng, epochs=_curve(
        np.linspace(1.0, 0.05, 12), val=np.r_[np.linspace(1.0, 0.5, 6), np.linspace(0.55, 0.9, 6)],
        acc=np.full(12, 0.85))), "overfitting", ["overfitting"]),
    ("diverged: loss not finite", lambda rng: _record(rng, epochs=_curve(
        np.array([2.0, 1.0, np.nan]))), "diverged", ["diverged"]),
]


@pytest.mark.parametrize(("label", "make", "verdict", "expected"), CASES,
                         ids=[c[0] for c in CASES])
def test_each_labelled_run_gets_its_verdict_and_valid_fixes(label, make, verdict, expected,
                                                             rng):
    record = make(rng)
    diagnosis = diagnose_record(record)
    assert diagnosis.verdict == verdict, (label, diagnosis.verdicts, diagnosis.evidence)
    assert set(expected) <= set(diagnosis.verdicts), (label, diagnosis.verdicts)
    if verdict == "healthy":
        assert diagnosis.findings == []
    else:
        assert diagnosis.verdicts[0] == verdict  # the primary finding first
        primary = diagnosis.findings[0]
        assert primary.evidence
        if verdict not in ("diverged",):
            assert primary.fix, (label, primary)  # an actionable change
    assert all(layer in LAYERS for f in diagnosis.findings for layer in f.layers)
    _assert_fixes_validate(diagnosis, record.spec)
    assert diagnosis.as_dict()["verdict"] == verdict  # JSON-safe


def test_a_run_the_loop_stopped_as_diverged_gets_its_fixes_from_the_same_table(rng):
    spec = _spec(optimizer={"name": "sgd", "lr": 10.0})
    record = _record(rng, spec=spec)
    diagnosis = diagnose_record(record, diverged=Divergence("loss is nan at step 7", 7, 3))
    assert diagnosis.verdict == "diverged" and diagnosis.detected_at_step == 7
    finding = diagnosis.findings[0]
    assert finding.evidence == {"error": "loss is nan at step 7", "step": 7,
                                "steps_per_epoch": 3}
    # The table's: down to SGD's usual rate (not a tenth of 10), one setting; a clip next.
    assert finding.fix == {"optimizer.lr": 0.1}
    assert finding.alternatives[0] == {"training.grad_clip_norm": 1.0}
    assert finding.alternatives
    # The same candidates as a run whose logged loss went NaN (the curve check's diverged).
    nan = diagnose_record(_record(rng, spec=spec, epochs=_curve(np.array([2.0, np.nan]))))
    assert [nan.findings[0].fix, *nan.findings[0].alternatives] == \
        [finding.fix, *finding.alternatives]
    _assert_fixes_validate(diagnosis, spec)


def test_fixes_name_the_cause_in_the_spec_at_hand(rng):
    sigmoid = diagnose_record(_record(rng, grads=_grads(rng, 1e-5), spec=_spec(**SIGMOID)))
    assert sigmoid.findings[0].fix["model.activation"] == "relu"
    plain = diagnose_record(_record(rng, grads=_grads(rng, 1e-5), spec=_spec(**PLAIN_RESNET)))
    assert plain.findings[0].fix == {"model.skip": "identity"}
    zeros = diagnose_record(_record(rng, spec=_spec(**ZEROS),
                                    weights={"layers.0": np.ones((8, 4))}))
    assert zeros.findings[0].fix == {"model.init": "glorot_normal"}
    exploding = diagnose_record(_record(rng, grads=_grads(rng, 1e4),
                                        spec=_spec(optimizer={"lr": 0.5})))
    # Adam at 0.5 is far above Adam's usual rate: down to it, not a tenth of it.
    assert exploding.findings[0].fix == {"optimizer.lr": 0.001}
    assert exploding.findings[0].alternatives  # tried in turn when the first does not help
    # A fix the spec cannot take is left out: lr is capped at 10.
    assert fixes.compose(_spec(optimizer={"lr": 10.0}), {"optimizer.lr": 100.0}) == {}
    # A linear model has no activation to change.
    assert fixes.activation(_spec(model={"kind": "linear"}), "relu") == {}


def test_the_thresholds_move_the_verdict(rng):
    lenient = DiagnosisThresholds(vanishing_ratio=1e-6)
    record = _record(rng, grads=_grads(rng, 1e-5))
    record.thresholds = lenient
    assert diagnose_record(record).verdict == "healthy"
    # 17% of the gap closed, still climbing at a steady pace: on its way (not a poor fit)
    record = _record(rng, epochs=_curve(np.linspace(2.3, 2.0, 10), val=np.linspace(2.3, 2.0, 10),
                                   acc=np.linspace(0.1, 0.25, 10)))
    assert diagnose_record(record).verdict == "healthy"
    record.thresholds = DiagnosisThresholds(chance_fraction=0.2)
    assert diagnose_record(record).verdict == "not_learning"


def test_early_stopping_that_restores_the_best_weights_is_not_overfitting(rng):
    curve = _curve(np.linspace(1.0, 0.05, 12),
                   val=np.r_[np.linspace(1.0, 0.5, 6), np.linspace(0.55, 0.9, 6)],
                   acc=np.full(12, 0.85))
    spec = _spec(regularization={"early_stopping": {"patience": 3}})
    assert diagnose_record(_record(rng, epochs=curve, spec=spec)).verdict == "healthy"


def test_kinds_without_gradients_get_their_own_checks(rng):
    hopfield = _record(rng, uses_gradients=False, baseline=Baseline("corrupted_input", 0.4, 0.0),
                       epochs=[{"train/energy": -90.0, "train/load": 0.05, "val/loss": 0.0,
                                "val/accuracy": 1.0}], weights={})
    diagnosis = diagnose_record(hopfield)
    assert diagnosis.verdict == "healthy" and diagnosis.verdicts == ["no_gradients"]
    assert diagnosis.findings[0].evidence["recall_accuracy"] == 1.0
    assert "grad_norm_median" not in diagnosis.evidence  # no gradient checks

    overloaded = _record(rng, uses_gradients=False, baseline=Baseline("corrupted_input", 0.4, 0.0),
                         epochs=[{"train/energy": -50.0, "train/load": 0.5, "val/loss": 0.9,
                                  "val/accuracy": 0.0}], weights={})
    diagnosis = diagnose_record(overloaded)
    assert diagnosis.verdict == "not_learning"
    assert diagnosis.verdicts == ["not_learning", "no_gradients"]
    assert diagnosis.findings[1].evidence["over_capacity"] is True

    spec = _spec(data={"name": "patterns"}, model={"kind": "rbm", "hidden": 16})
    rbm = _record(rng, uses_gradients=False, spec=spec, baseline=None, weights={},
                  epochs=[{"train/reconstruction_error": 0.25, "train/free_energy": -3.0}] * 5)
    diagnosis = diagnose_record(rbm)
    assert diagnosis.verdict == "not_learning"
    assert diagnosis.findings[0].fix["model.hidden"] == 32
    _assert_fixes_validate(diagnosis, spec)


def test_the_baselines_are_what_a_model_ignoring_its_input_scores():
    y = np.array([0] * 70 + [1] * 20 + [2] * 10)
    prior = measure_baseline("classification", "cross_entropy", y)
    p = np.array([0.7, 0.2, 0.1])
    assert prior.kind == "class_prior" and prior.accuracy == pytest.approx(0.7)
    assert prior.loss == pytest.approx(-(p * np.log(p)).sum())
    binary = measure_baseline("binary", "bce", np.array([[1.0]] * 25 + [[0.0]] * 75))
    assert binary.accuracy == pytest.approx(0.75)
    assert binary.loss == pytest.approx(-(0.25 * np.log(0.25) + 0.75 * np.log(0.75)))
    regression = measure_baseline("regression", "mse", np.array([[1.0], [3.0]]))
    assert regression.kind == "mean_predictor" and regression.loss == pytest.approx(1.0)
    tokens = measure_baseline("language_model", "cross_entropy", np.array([[0, 0, 1, 1]]))
    assert tokens.kind == "unigram" and tokens.loss == pytest.approx(np.log(2))
    x, clean = np.array([[1.0, -1.0], [1.0, 1.0]]), np.array([[1.0, 1.0], [1.0, 1.0]])
    recall = measure_baseline("recall", "mse", clean, x)
    assert recall.kind == "corrupted_input" and recall.accuracy == pytest.approx(0.5)
    assert measure_baseline("classification", "perceptron", y).loss is None


STUCK = _curve(np.full(10, 2.3), val=np.full(10, 2.3), acc=np.full(10, 0.1))


@pytest.mark.parametrize(("label", "spec", "first"), [
    ("a rate far below the usual one goes to it, not tenfold",
     _spec(optimizer={"name": "sgd", "lr": 1e-6}), {"optimizer.lr": 0.1}),
    ("a schedule that decays the rate to nothing is undone first",
     _spec(optimizer={"name": "sgd", "lr": 0.1}, schedule={"name": "exponential", "gamma": 0.01}),
     {"schedule.name": "constant"}),
    ("a usual rate that does not learn: another optimizer",
     _spec(optimizer={"name": "sgd", "lr": 0.1}),
     {"optimizer.name": "adam", "optimizer.lr": 0.001}),
])
def test_not_learning_remedies_start_from_the_likeliest_cause(label, spec, first, rng):
    diagnosis = diagnose_record(_record(rng, epochs=STUCK, spec=spec))
    finding = diagnosis.findings[0]
    assert finding.verdict == "not_learning", label
    assert finding.fix == first, (label, finding.fix)
    assert finding.alternatives, label
    _assert_fixes_validate(diagnosis, spec)


def test_exploding_vanilla_relu_rnn_is_first_given_tanh(rng):
    spec = _spec(model={"kind": "rnn", "cell": "vanilla", "activation": "relu", "hidden": 16},
                 data={"name": "adding", "params": {"n": 64, "length": 10}},
                 optimizer={"name": "sgd", "lr": 0.5})
    diagnosis = diagnose_record(_record(rng, grads=_grads(rng, 1e4), spec=spec))
    finding = diagnosis.findings[0]
    assert finding.verdict == "exploding"
    assert finding.fix["model.activation"] == "tanh"
    assert {"model.cell": "lstm", "model.activation": "tanh"}.items() <= {
        k: v for alt in finding.alternatives for k, v in alt.items()}.items()
    _assert_fixes_validate(diagnosis, spec)


def test_exploding_under_a_rate_far_above_the_usual_one_first_lowers_the_rate(rng):
    # Adam at 20x its usual 1e-3: the rate is the cause, tanh comes second.
    spec = _spec(model={"kind": "rnn", "cell": "vanilla", "activation": "relu", "hidden": 16},
                 data={"name": "adding", "params": {"n": 64, "length": 10}},
                 optimizer={"name": "adam", "lr": 0.02}, training={"grad_clip_norm": 1.0})
    finding = diagnose_record(_record(rng, grads=_grads(rng, 1e4), spec=spec)).findings[0]
    assert finding.verdict == "exploding"
    assert finding.fix == {"optimizer.lr": 0.001}
    assert finding.alternatives[0] == {"model.activation": "tanh"}


@pytest.mark.parametrize(("schedule", "first"), [
    ({"name": "constant"}, {"schedule.name": "cosine"}),
    # a rate that already decays is not annealed again: half of it, then the usual rate
    ({"name": "step", "step_epochs": 5}, {"optimizer.lr": 1.0})])
def test_an_oscillating_run_is_first_annealed_then_slowed(schedule, first, rng):
    spec = _spec(optimizer={"name": "sgd", "lr": 2.0}, schedule=schedule)
    diagnosis = diagnose_record(_record(rng, spec=spec, epochs=_curve(
        np.tile([1.0, 1.6], 5), acc=np.linspace(0.4, 0.8, 10))))
    finding = diagnosis.findings[0]
    assert finding.verdict == "unstable"
    assert finding.fix == first
    assert {"optimizer.lr": 0.1} in finding.alternatives  # the usual rate, still tried
    _assert_fixes_validate(diagnosis, spec)
