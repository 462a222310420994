"""Each regularizer does what the lecture says, measured on tiny seeded trainings."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from models.base import DataShape
from models.builders import build_model
from models.kinds.mlp import MLPConfig
from models.mc_dropout import mc_output, sampling_masks
from models.objectives import Objective
from models.regularizers import constrained_weights, penalized_weights
from services.contract.spec import ExperimentSpec
from tests.utils.specs import merge, mlp_spec
from tests.utils.training import CPU, EpochRecorder, trainer_for
from workers.training.build import build_trainer
from workers.training.callback_base import Callback, TrainerView
from workers.training.evaluation import Split
from workers.training.loop import Trainer

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def small_digits(**overrides):
    """Digits with half held out, a 32-unit MLP, plain SGD: about 0.5 s per run."""
    base = mlp_spec(data={"val_fraction": 0.5}, model={"hidden": [32]},
                    optimizer={"name": "sgd", "lr": 0.2}, training={"epochs": 20})
    return merge(base, overrides)


def weights(trainer: Trainer) -> torch.Tensor:
    return torch.cat([p.detach().flatten()
                      for p in penalized_weights(trainer.model, include_biases=False)])


# -- weight penalties --------------------------------------------------------------------------
def test_l1_gives_sparser_weights_than_l2_at_matched_loss():
    runs = {}
    for name, reg in {"l1": {"l1": 1e-3}, "l2": {"l2": 1e-3}}.items():
        trainer = trainer_for(small_digits(regularization=reg))
        result = trainer.fit()
        w = weights(trainer)
        runs[name] = (result["train/loss"], (w.abs() < 1e-3).float().mean().item())
    (loss_l1, zeros_l1), (loss_l2, zeros_l2) = runs["l1"], runs["l2"]
    assert abs(loss_l1 - loss_l2) / loss_l2 < 0.15, runs  # matched fit (measured: 0.151, 0.142)
    assert zeros_l1 > 0.10 and zeros_l1 > 5 * zeros_l2, runs  # measured: 15% vs 0.4% near 0


def test_l2_shrinks_the_weight_norm_and_train_penalty_is_logged():
    norms, penalties = {}, {}
    for l2 in (0.0, 1e-2):
        recorder = EpochRecorder()
        trainer = trainer_for(small_digits(regularization={"l2": l2}), [recorder])
        trainer.fit()
        norms[l2] = weights(trainer).norm().item()
        penalties[l2] = [m.get("train/penalty") for m in recorder.metrics]
    assert norms[1e-2] < 0.7 * norms[0.0], norms
    assert penalties[0.0] == [None] * 20  # no penalty, no metric
    # The last epoch's mean penalty is lambda * ||W||^2 of weights that barely move any more.
    assert penalties[1e-2][-1] == pytest.approx(1e-2 * norms[1e-2] ** 2, rel=0.05)


def test_train_penalty_is_exactly_lambda_times_the_norm_and_biases_only_on_request():
    for penalize_biases in (False, True):
        spec = small_digits(regularization={"l1": 0.01, "l2": 0.1,
                                            "penalize_biases": penalize_biases},
                            training={"epochs": 1, "batch_size": "full"})
        recorder = EpochRecorder()
        trainer = trainer_for(spec, [recorder])
        covered = [p.detach().clone()
                   for n, p in trainer.model.named_parameters()
                   if p.dim() >= 2 or penalize_biases and n.endswith("bias")]
        trainer.fit()  # one full-batch step: the penalty is that of the initial weights
        expected = sum(0.01 * w.abs().sum() + 0.1 * w.square().sum() for w in covered)
        assert recorder.metrics[0]["train/penalty"] == pytest.approx(expected.item(), rel=1e-5)
        assert recorder.metrics[0]["train/loss"] < recorder.metrics[0]["train/penalty"]


def test_activity_penalty_shrinks_hidden_activations():
    def mean_activity(activity_l1: float) -> float:
        trainer = trainer_for(small_digits(regularization={"activity_l1": activity_l1}))
        trainer.fit()
        trainer.model.eval()
        trainer.model(trainer.splits["val"].x)
        return trainer.model.hidden_activations()[0].abs().mean().item()

    assert mean_activity(1e-2) < 0.6 * mean_activity(0.0)  # measured: 0.38 vs 0.83


# -- dropout -----------------------------------------------------------------------------------
def tanh_mlp(dropout: float) -> nn.Module:
    torch.manual_seed(0)
    config = MLPConfig(hidden=[200, 200], activation="tanh")
    return build_model(config, DataShape((16,), 3, "classification"), dropout=dropout)


def test_dropout_masks_hidden_units_at_the_configured_rate_and_inference_is_the_expectation():
    model = tanh_mlp(0.3)
    x = torch.randn(500, 16)
    layer = model.layers[0]
    units = layer.units(x)  # (500, 200), tanh: never exactly 0 without a mask
    model.train()
    masked = layer(x, units)
    dropped = (masked == 0).float().mean().item()
    assert dropped == pytest.approx(0.3, abs=0.01)  # 100,000 Bernoulli draws
    kept = masked != 0
    torch.testing.assert_close(masked[kept], units[kept] / 0.7)  # inverted dropout
    model.eval()
    torch.testing.assert_close(layer(x, units), units)  # the expected activation, no mask


def test_mc_inference_averages_the_outputs_of_sampled_masks():
    model = tanh_mlp(0.5).eval()
    objective = Objective.resolve("classification")
    x = torch.randn(64, 16)
    torch.manual_seed(7)
    z = mc_output(model, x, objective, samples=10)
    torch.manual_seed(7)
    with sampling_masks(model):
        probs = torch.stack([torch.softmax(model(x), dim=-1) for _ in range(10)])  # (10, B, 3)
    torch.testing.assert_close(torch.softmax(z, dim=-1), probs.mean(dim=0))
    assert not model.training and not model.layers[0].dropout.training  # restored
    assert probs.std(dim=0).mean() > 0.01  # the samples did differ: masks were drawn
    expected = torch.softmax(model(x), dim=-1)
    assert not torch.allclose(expected, probs.mean(dim=0), atol=1e-3)


def test_mc_evaluation_in_the_loop_is_repeatable_and_leaves_training_unchanged():
    spec = small_digits(regularization={"dropout": 0.5}, training={"epochs": 2})
    plain = trainer_for(spec)
    plain_result = plain.fit()
    mc = trainer_for(merge(spec, {"regularization": {
        "dropout_inference": {"mode": "mc", "samples": 8}}}))
    mc_result = mc.fit()
    # Same training (evaluation draws from its own stream), different evaluation rule.
    assert mc_result["train/loss"] == plain_result["train/loss"]
    assert mc_result["val/loss"] != plain_result["val/loss"]
    val = mc.splits["val"]
    assert mc.evaluate(val)["loss"].item() == mc.evaluate(val)["loss"].item()


# -- constraints -------------------------------------------------------------------------------
class AfterEveryStep(Callback):
    def __init__(self, check):
        self.check, self.steps = check, 0

    def on_step_end(self, trainer: TrainerView) -> None:
        self.check(constrained_weights(trainer.model))
        self.steps += 1


def row_norms(ws: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([w.detach().flatten(1).norm(dim=1) for w in ws])


def test_max_norm_holds_after_every_step_and_binds():
    peaks: list[float] = []

    def check(ws: list[torch.Tensor]) -> None:
        peaks.append(row_norms(ws).max().item())

    spec = small_digits(regularization={"max_norm": 0.5}, training={"epochs": 2})
    trainer = trainer_for(spec, [AfterEveryStep(check)])
    assert row_norms(constrained_weights(trainer.model)).max() > 0.5  # Glorot rows start above
    trainer.fit()
    assert len(peaks) == trainer.step > 0
    assert max(peaks) <= 0.5 + 1e-5
    assert min(peaks) == pytest.approx(0.5, abs=1e-5)  # the cap is active, not vacuous


def test_unit_norm_and_non_neg_hold_after_every_step():
    seen: list[tuple[float, float, float]] = []

    def check(ws: list[torch.Tensor]) -> None:
        norms = row_norms(ws)
        seen.append((norms.min().item(), norms.max().item(),
                     min(w.min().item() for w in ws)))

    spec = small_digits(regularization={"unit_norm": True, "non_neg": True},
                        training={"epochs": 1})
    trainer_for(spec, [AfterEveryStep(check)]).fit()
    assert seen and all(abs(lo - 1) < 1e-5 and abs(hi - 1) < 1e-5 and neg >= 0
                        for lo, hi, neg in seen)


# -- input corruption --------------------------------------------------------------------------
class InputSpy(Callback):
    """Records what the model's forward receives, in training and in evaluation."""

    def on_train_start(self, trainer: TrainerView) -> None:
        self.seen: dict[bool, list[torch.Tensor]] = {True: [], False: []}
        trainer.model.register_forward_pre_hook(
            lambda module, args: self.seen[module.training].append(args[0].detach().clone()))


def zeros_trainer(reg: dict, spy: InputSpy) -> Trainer:
    """Inputs that are all 0, so whatever the model sees in training is the corruption."""
    spec = ExperimentSpec.model_validate(mlp_spec(regularization=reg,
                                                  training={"epochs": 1, "batch_size": 250}))
    x, y = torch.zeros(1000, 16), torch.randint(0, 3, (1000,))
    model = build_model(spec.model, DataShape((16,), 3, "classification"))
    return build_trainer(spec, model, Objective.resolve("classification"),
                         {"train": Split(x, y), "val": Split(x[:50], y[:50])}, device=CPU,
                         callbacks=[spy])


def test_gaussian_input_noise_has_the_configured_std_in_training_only():
    spy = InputSpy()
    zeros_trainer({"input_noise_std": 0.3}, spy).fit()
    trained = torch.cat(spy.seen[True])  # (1000, 16)
    assert trained.shape == (1000, 16)
    assert trained.std().item() == pytest.approx(0.3, rel=0.03)
    assert abs(trained.mean().item()) < 0.01
    assert spy.seen[False] and all((x == 0).all() for x in spy.seen[False])


def test_bit_flips_flip_the_configured_fraction_of_bits_in_training_only():
    spy = InputSpy()
    zeros_trainer({"input_flip_prob": 0.1}, spy).fit()
    trained = torch.cat(spy.seen[True])
    assert set(trained.unique().tolist()) == {0.0, 1.0}
    assert trained.mean().item() == pytest.approx(0.1, abs=0.01)  # 16,000 draws
    assert all((x == 0).all() for x in spy.seen[False])


# -- initialization: the symmetry slide ---------------------------------------------------------
def test_zero_init_leaves_hidden_units_identical_and_glorot_breaks_the_symmetry():
    def hidden_layer_after_training(init: str) -> tuple[torch.Tensor, torch.Tensor]:
        spec = small_digits(model={"hidden": [8, 8], "activation": "sigmoid", "init": init},
                            training={"epochs": 3})
        trainer = trainer_for(spec)
        trainer.fit()
        trainer.model(trainer.splits["val"].x)
        return trainer.model.layers[1].weight.detach(), trainer.model.hidden_activations()[1]

    weight, units = hidden_layer_after_training("zeros")
    assert weight.abs().sum() > 0  # it did learn something ...
    torch.testing.assert_close(weight, weight[:1].expand_as(weight))  # ... the same per unit
    torch.testing.assert_close(units, units[:, :1].expand_as(units))
    weight, units = hidden_layer_after_training("glorot_normal")
    assert (weight - weight[:1]).abs().max() > 0.1
    assert not math.isclose(units[:, 0].mean().item(), units[:, 1].mean().item(), rel_tol=1e-3)
