"""The feed-forward and energy-based kinds: kernel machines, residual nets, CNNs, Hopfield
nets, RBMs, pretrained autoencoders.

Every registered kind builds, runs forward and backward without NaN and pickles; then each new
family learns past the lecture's bar on a tiny seeded CPU run, in process (no Ray, no MLflow).
"""

from __future__ import annotations

import itertools
import math
import pickle
from typing import Any

import pytest
import torch

from models.base import DataShape, ModelConfigError
from models.builders import build_model
from models.hopfield import energy, hebbian, recall
from models.kernel import PolynomialFeatures, RandomFourierFeatures
from models.objectives import Objective
from models.rbm import BinaryRBM
from models.registry import MODEL_KINDS
from models.report import ModelReport
from services.contract.spec import ExperimentSpec
from workers.run import prepare, seed_everything, to_splits
from workers.training.build import build_trainer
from workers.training.callback_base import Callback, TrainerView

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """As a worker with one CPU runs: more threads than cores made training 5-9x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

# Shapes a kind may need, tried in order: tabular, image, +-1 patterns to recall.
CANDIDATE_SHAPES = [
    DataShape((64,), 10, "classification"),
    DataShape((1, 8, 8), 10, "classification", {"image_shape": [1, 8, 8]}),
    DataShape((64,), 64, "recall", {"values": "pm1", "image_shape": [1, 8, 8]}),
]


# Sequence kinds need token or time-step data none of the shapes above has; tests/models/
# test_sequence_models.py builds, runs and back-propagates each of them on its own datasets.
SEQUENCE_KINDS = {"autoregressive", "captioner", "rnn", "transformer"}


def _try_shapes(kind: str) -> tuple[torch.nn.Module, DataShape] | None:
    config = next(f.config_cls for f in MODEL_KINDS if f.kind == kind)()
    for shape in CANDIDATE_SHAPES:
        try:
            return build_model(config, shape), shape
        except ModelConfigError:
            continue
    return None


def _fitting_shape(kind: str) -> tuple[torch.nn.Module, DataShape]:
    built = _try_shapes(kind)
    assert built is not None, f"no candidate DataShape fits kind {kind!r}"
    return built


def test_only_the_sequence_kinds_need_data_of_their_own():
    unfit = {f.kind for f in MODEL_KINDS if _try_shapes(f.kind) is None}
    assert unfit == SEQUENCE_KINDS


def _batch(shape: DataShape) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(6, *shape.input_shape)
    if shape.task == "recall":
        x = torch.sign(x)
        return x, x.clone()
    return x, torch.arange(6) % shape.output_dim


@pytest.mark.parametrize("kind", sorted({f.kind for f in MODEL_KINDS} - SEQUENCE_KINDS))
def test_every_kind_builds_runs_forward_and_backward_and_pickles(kind: str):
    torch.manual_seed(0)
    model, shape = _fitting_shape(kind)
    objective = Objective.resolve(shape.task)
    x, y = _batch(shape)
    params = [p for group in model.layer_groups().values() for p in group]
    assert {id(p) for p in params} == {id(p) for p in model.parameters()}, "layers miss params"
    before = [p.detach().clone() for p in model.parameters()]
    if model.uses_gradients:
        out = model.training_step(x, y, objective)
        out["loss"].backward()
        assert torch.isfinite(out["loss"]) and torch.isfinite(out["output"]).all()
        for name, p in model.named_parameters():
            assert p.grad is not None, f"{kind}: {name} received no gradient"
            assert torch.isfinite(p.grad).all(), f"{kind}: {name} has a NaN gradient"
    else:
        with torch.no_grad():
            out = model.training_step(x, y, objective)
        assert torch.isfinite(out["loss"]) and out["output"].shape == y.shape
        assert not any(p.requires_grad for p in model.parameters())
        changed = [not torch.equal(a, b) for a, b in zip(before, model.parameters(),
                                                          strict=True)]
        assert any(changed), f"{kind}: its update changed no weight"
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(x)).all()
    assert isinstance(model.after_training({"train": (x, y)}), ModelReport)
    assert pickle.loads(pickle.dumps(model)) is not None  # MLflow logs the model pickled


# -- in-process training ---------------------------------------------------------------------

class _History(Callback):
    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    def on_epoch_end(self, trainer: TrainerView, metrics: dict[str, float]) -> None:
        self.epochs.append(metrics)


def train(spec: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, float]], Any]:
    """Pretrain (if the kind does) and train `spec` on the CPU; the final result, the epochs'
    metrics, the model."""
    parsed = ExperimentSpec.model_validate({"training": {"seed": 0}, **spec})
    seed_everything(parsed.training.seed)
    bundle, objective, model = prepare(parsed, [], CPU)
    splits = to_splits(bundle, CPU)
    history = _History()
    steps = model.pretrain(splits["train"].x, splits["train"].y, objective, lambda m, s: None)
    trainer = build_trainer(parsed, model, objective, splits, device=CPU, callbacks=[history])
    trainer.step = steps
    return trainer.fit(), history.epochs, model


# -- kernel machines -------------------------------------------------------------------------

def test_polynomial_features_give_the_kernel_exactly():
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    for degree, c in [(2, 1.0), (3, 0.5), (1, 0.0)]:
        phi = PolynomialFeatures(3, degree, c).double()
        assert torch.allclose(phi(x) @ phi(y).T, (x @ y.T + c) ** degree, atol=1e-6)
    lecture = PolynomialFeatures(2, 2, 1.0)  # [1, x1^2, x2^2, sqrt2 x1, sqrt2 x2, sqrt2 x1 x2]
    assert lecture.out_features == 6
    assert sorted(lecture(torch.tensor([[2.0, 3.0]]))[0].tolist()) == pytest.approx(
        sorted([1, 4, 9, 2 * math.sqrt(2), 3 * math.sqrt(2), 6 * math.sqrt(2)]))


def test_random_fourier_features_approximate_the_gaussian_kernel():
    x, y = torch.randn(6, 2), torch.randn(6, 2)
    phi = RandomFourierFeatures(2, 20_000, width=2.0, seed=0)
    exact = torch.exp(-torch.cdist(x, y) ** 2 / 2.0)
    assert (phi(x) @ phi(y).T - exact).abs().max() < 0.05


def test_polynomial_kernel_separates_circles_where_a_linear_model_cannot():
    base = {"data": {"name": "circles", "params": {"n": 400, "noise": 0.05}},
            "optimizer": {"name": "adam", "lr": 0.05}, "training": {"epochs": 20,
                                                                    "batch_size": 32}}
    linear, _, _ = train({**base, "model": {"kind": "linear"}})
    kernel, _, _ = train({**base, "model": {"kind": "kernel", "degree": 2}})
    assert linear["val/accuracy"] < 0.7
    assert kernel["val/accuracy"] > 0.95


# -- CNNs ------------------------------------------------------------------------------------

def test_cnn_beats_90_percent_on_digits_and_shows_first_layer_feature_maps():
    result, _, model = train({"data": {"name": "digits", "params": {"layout": "image"}},
                              "model": {"kind": "cnn", "conv": [{"channels": 8},
                                                                {"channels": 16}],
                                        "dense": [32]},
                              "optimizer": {"name": "adam", "lr": 0.01},
                              "training": {"epochs": 5}})
    assert result["val/accuracy"] > 0.9
    pictures = model.after_training({"train": (torch.rand(3, 1, 8, 8), None)}).pictures
    assert pictures["cnn_feature_maps"].images.shape == (1 + 8, 8, 8)  # input + 8 maps


def test_1d_convolution_reads_flat_features_as_a_signal():
    result, _, model = train({"data": {"name": "digits"},
                              "model": {"kind": "cnn", "input_shape": [1, 64], "dense": [],
                                        "conv": [{"channels": 8, "kernel_size": 5,
                                                  "pool": "avg"}]},
                              "optimizer": {"name": "adam", "lr": 0.01},
                              "training": {"epochs": 3}})
    assert isinstance(model.conv[0], torch.nn.Conv1d) and result["val/accuracy"] > 0.85


# -- residual nets ---------------------------------------------------------------------------

def test_20_layer_residual_mlp_trains_where_the_plain_one_stalls():
    def run(skip: str) -> float:
        result, _, model = train({"data": {"name": "digits"},
                                  "model": {"kind": "resnet", "depth": 20, "width": 32,
                                            "skip": skip},
                                  "optimizer": {"name": "sgd", "lr": 0.02, "momentum": 0.9},
                                  "training": {"epochs": 4}})
        assert len(model.layer_names()) == 20 + 1  # the stem, 19 trunk layers, the output
        return result["val/accuracy"]

    assert run("none") < 0.3
    assert run("identity") > 0.8


@pytest.mark.parametrize("input_shape", [(1, 8, 8), (2, 32)])
def test_residual_cnn_with_weighted_skips_trains_every_skip(input_shape: tuple[int, ...]):
    spec = ExperimentSpec.model_validate({"data": {"name": "digits"}, "model": {
        "kind": "resnet", "layout": "conv", "depth": 5, "width": 4, "skip": "weighted"}})
    model = build_model(spec.model, DataShape(input_shape, 10, "classification"))
    conv = torch.nn.Conv2d if len(input_shape) == 3 else torch.nn.Conv1d
    assert isinstance(model.stem, conv) and len(model.blocks) == 2
    x = torch.randn(3, *input_shape)
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2])).backward()
    for block in model.blocks:
        assert block.skip.weight.grad is not None and block.skip.weight.grad.abs().sum() > 0


def test_denoising_zeroes_inputs_while_training_only():
    spec = ExperimentSpec.model_validate({"data": {"name": "digits"}, "model": {
        "kind": "autoencoder", "denoise": 0.5}})
    model = build_model(spec.model, DataShape((64,), 10, "classification"))
    x = torch.rand(4, 64) + 0.5
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


# -- Hopfield nets ---------------------------------------------------------------------------

def test_hebbian_storage_is_the_lecture_rule_and_stores_each_pattern_once():
    model, _ = _fitting_shape("hopfield")
    patterns = torch.sign(torch.randn(3, 64))
    assert model.store(torch.cat([patterns, patterns[:1]])) == 3
    expected = patterns.T @ patterns / 64
    expected.fill_diagonal_(0)
    assert torch.allclose(model.weight, expected)
    assert model.store(patterns) == 0  # seen before: W unchanged
    assert torch.allclose(model.weight, expected)


@pytest.mark.parametrize("update", ["async", "sync"])
def test_sign_dynamics_restore_a_stored_pattern(update: str):
    torch.manual_seed(0)
    patterns = torch.sign(torch.randn(3, 100))
    probe = patterns.clone()
    probe[:, :10] *= -1  # 10% corruption
    trace: list[float] = []
    out = recall(hebbian(patterns), probe, update=update, max_sweeps=10, trace=trace)
    assert torch.equal(out, patterns)
    assert trace[-1] == pytest.approx(float(energy(hebbian(patterns), patterns).mean()))
    if update == "async":  # each flip lowers E = -sum w_ji v_i v_j
        assert all(b <= a + 1e-4 for a, b in itertools.pairwise(trace))
        assert len(trace) > 100  # one point per unit update


def _hopfield(patterns: int, size: int = 100, copies: int = 4) -> tuple[dict, list, Any]:
    return train({"data": {"name": "patterns", "params": {"patterns": patterns, "size": size,
                                                          "corruption": 0.1, "copies": copies}},
                  "model": {"kind": "hopfield", "capacity_max_patterns": 24},
                  "training": {"epochs": 1}})


def test_hopfield_recalls_at_low_load_and_fails_at_high_load():
    low, history, model = _hopfield(patterns=3)
    assert low["val/accuracy"] == 1.0 and history[-1]["train/stored_patterns"] == 3
    high, _, _ = _hopfield(patterns=40, copies=2)
    assert high["val/accuracy"] < 0.2
    stored = torch.sign(torch.randn(4, 100))
    corrupted = stored.clone()
    corrupted[:, :10] *= -1
    curve = model.after_training({"val": (corrupted, stored)}).curves
    capacity = curve["hopfield/capacity"]
    assert capacity.steps[0] == 1 and capacity.steps[-1] == 24
    assert capacity.values[0] == 1.0 and capacity.values[-1] < 0.5
    assert curve["hopfield/energy"].xlabel == "unit update"


# -- RBMs ------------------------------------------------------------------------------------

def test_rbm_free_energy_is_minus_log_sum_over_hidden_states():
    torch.manual_seed(0)
    rbm = BinaryRBM(3, 2, init_std=1.0)
    rbm.visible_bias.data = torch.randn(3)
    rbm.hidden_bias.data = torch.randn(2)
    v = torch.tensor([[1.0, 0.0, 1.0]])
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=2)))  # (4, 2)
    energies = rbm.energy(v.expand(4, 3), states)
    assert rbm.free_energy(v) == pytest.approx(float(-torch.logsumexp(-energies, 0)),
                                               abs=1e-5)


def test_cd1_lowers_the_reconstruction_error_and_draws_samples():
    _, history, model = train({"data": {"name": "patterns",
                                        "params": {"source": "digits", "patterns": 600,
                                                   "copies": 1, "corruption": 0.0}},
                               "model": {"kind": "rbm", "hidden": 64, "k": 1},
                               "training": {"epochs": 5, "batch_size": 32}})
    errors = [e["train/reconstruction_error"] for e in history]
    assert errors[-1] < 0.7 * errors[0]
    assert history[-1]["val/mse"] < 0.8 * history[0]["val/mse"]
    assert all(math.isfinite(e["train/free_energy"]) for e in history)
    samples = model.after_training({}).pictures["rbm_gibbs_samples"].images
    assert samples.shape == (16, 8, 8) and 0 <= samples.min() and samples.max() <= 1


# -- pretraining -----------------------------------------------------------------------------

def _pretrained(pretraining: str, method: str = "autoencoder") -> tuple[dict, list, Any]:
    return train({"data": {"name": "digits"},
                  "model": {"kind": "autoencoder", "hidden": [64, 64, 64],
                            "pretraining": pretraining, "pretrain_with": method,
                            "pretrain_epochs": 3, "pretrain_lr": 0.01},  # RBMs: cd_lr
                  "optimizer": {"name": "sgd", "lr": 0.1},
                  "training": {"epochs": 2, "batch_size": 32}})


def test_pretraining_changes_the_starting_point_of_fine_tuning():
    _, random_init, _ = _pretrained("none")
    _, stacked, _ = _pretrained("unsupervised")
    _, supervised, _ = _pretrained("supervised")
    _, rbms, _ = _pretrained("unsupervised", "rbm")
    assert random_init[0]["val/accuracy"] < 0.25  # a deep sigmoid net barely moves at first
    # RBM stages step by cd_lr, not by Adam's pretrain_lr (which left them untrained).
    assert rbms[0]["val/accuracy"] > random_init[0]["val/accuracy"] + 0.2
    assert stacked[0]["val/accuracy"] > random_init[0]["val/accuracy"] + 0.3
    assert stacked[0]["val/loss"] < random_init[0]["val/loss"] - 0.3
    assert supervised[0]["val/accuracy"] > random_init[0]["val/accuracy"] + 0.5


@pytest.mark.parametrize("method", ["autoencoder", "rbm", "supervised"])
def test_each_pretraining_stage_logs_its_own_steps_before_fine_tuning(method: str):
    config = {"kind": "autoencoder", "hidden": [16, 8], "pretrain_epochs": 2,
              "pretraining": "supervised" if method == "supervised" else "unsupervised",
              "pretrain_with": "rbm" if method == "rbm" else "autoencoder",
              "pretrain_batch_size": 100}
    spec = ExperimentSpec.model_validate({"data": {"name": "digits"}, "model": config})
    torch.manual_seed(0)
    bundle, objective, model = prepare(spec, [], CPU)
    first = model.encoder[0].weight.detach().clone()
    logged: list[tuple[int, dict[str, float]]] = []
    x, y = torch.as_tensor(bundle.x_train), torch.as_tensor(bundle.y_train)
    steps = model.pretrain(x, y, objective, lambda metrics, step: logged.append((step, metrics)))
    per_epoch = math.ceil(len(x) / 100)
    assert steps == 2 * 2 * per_epoch  # 2 layers x 2 epochs
    assert [s for s, _ in logged] == [per_epoch * i - 1 for i in range(1, 5)]
    assert [{key.rsplit("/", 1)[0] for key in m} for _, m in logged] == [
        {"pretrain/layer_0"}] * 2 + [{"pretrain/layer_1"}] * 2
    assert all(f"pretrain/layer_{i // 2}/loss" in m for i, (_, m) in enumerate(logged))
    assert all(v > 0 for _, m in logged for k, v in m.items() if k.endswith("update_norm"))
    assert not torch.equal(first, model.encoder[0].weight)


# -- refusals --------------------------------------------------------------------------------

FLAT = DataShape((64,), 10, "classification")
IMAGE = DataShape((1, 8, 8), 10, "classification")


@pytest.mark.parametrize(("config", "shape", "loc"), [
    ({"kind": "cnn"}, FLAT, ("input_shape",)),
    ({"kind": "cnn", "input_shape": [1, 9, 9]}, FLAT, ("input_shape",)),
    ({"kind": "cnn", "conv": [{"kernel_size": 11, "padding": 0}]}, IMAGE,
     ("conv", 0, "kernel_size")),
    ({"kind": "cnn", "conv": [{"pool_size": 4}, {"pool_size": 4}]}, IMAGE,
     ("conv", 1, "pool_size")),
    ({"kind": "resnet", "layout": "conv"}, FLAT, ("layout",)),
    ({"kind": "kernel", "degree": 4}, FLAT, ("degree",)),
    ({"kind": "hopfield"}, FLAT, ("kind",)),
    ({"kind": "rbm"}, FLAT, ("kind",)),
    ({"kind": "autoencoder", "pretrain_with": "rbm", "activation": "relu"}, FLAT,
     ("activation",)),
])
def test_configs_that_cannot_work_name_the_field(config: dict, shape: DataShape, loc: tuple):
    spec = ExperimentSpec.model_validate({"data": {"name": "digits"}, "model": config})
    with pytest.raises(ModelConfigError) as refused:
        build_model(spec.model, shape)
    assert refused.value.loc == loc and refused.value.msg


# -- data ------------------------------------------------------------------------------------

def test_patterns_are_corrupted_copies_with_the_asked_flip_fraction():
    from workers.data.patterns import PatternsParams, patterns

    x, y, task, extra = patterns(PatternsParams(patterns=4, size=50, corruption=0.2, copies=3))
    assert task == "recall" and x.shape == y.shape == (12, 50)
    assert set(y.flatten().tolist()) == {-1.0, 1.0}
    assert ((x != y).sum(1) == 10).all()
    assert len({tuple(row) for row in y.tolist()}) == 4
    again, *_ = patterns(PatternsParams(patterns=4, size=50, corruption=0.2, copies=3))
    assert (again == x).all()
    digits, labels, *_ = patterns(PatternsParams(source="digits", patterns=10, copies=1,
                                                 corruption=0.0))
    assert digits.shape == (10, 64) and len({tuple(r) for r in digits.tolist()}) == 10
