"""Training controls: early stopping, gradient clipping, schedules, full-batch and mini-batch
descent, mixed precision and the runtime cap, each measured on tiny seeded trainings."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from services.contract.regularization_spec import EarlyStoppingSpec
from tests.utils.specs import merge, mlp_spec
from tests.utils.training import EpochRecorder, trainer_for
from workers.training.callback_base import Callback, TrainerView
from workers.training.regularizers.early_stopping import EarlyStopping

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def tiny(**overrides):
    base = mlp_spec(data={"val_fraction": 0.5}, model={"hidden": [16]},
                    optimizer={"name": "sgd", "lr": 0.1}, training={"epochs": 6})
    return merge(base, overrides)


# -- early stopping ----------------------------------------------------------------------------
def scripted(values: list[float], **spec) -> tuple[EarlyStopping, SimpleNamespace]:
    """Feed `values` of the monitor to the callback as epochs 1, 2, ...; the model's weight
    holds the epoch number, so the restored weight says which epoch was restored."""
    stopping = EarlyStopping(EarlyStoppingSpec(**spec))
    model = nn.Linear(1, 1, bias=False)
    trainer = SimpleNamespace(model=model, epoch=0, stop=None)
    trainer.request_stop = lambda reason: setattr(trainer, "stop", (trainer.epoch + 1, reason))
    for epoch, value in enumerate(values):
        trainer.epoch = epoch
        with torch.no_grad():
            model.weight.fill_(epoch + 1)
        stopping.on_epoch_end(trainer, {spec.get("monitor", "val/loss"): value})
        if trainer.stop:
            break
    stopping.on_train_end(trainer)
    return stopping, trainer


@pytest.mark.parametrize(("values", "spec", "best", "stopped"), [
    # 0.89 beats 0.9 by less than min_delta: no improvement, 2 epochs since the best -> stop
    ([1.0, 0.9, 0.95, 0.89, 0.91], {"patience": 2, "min_delta": 0.02}, 2, 4),
    # the same values without min_delta: epoch 4 improves, and patience is not used up
    ([1.0, 0.9, 0.95, 0.89, 0.91], {"patience": 2}, 4, None),
    # accuracy is maximized in auto mode; a tie is not an improvement
    ([0.5, 0.6, 0.6, 0.55], {"patience": 2, "monitor": "val/accuracy"}, 2, 4),
    # an explicit mode wins over the metric's name
    ([1.0, 2.0, 1.5, 1.8], {"patience": 1, "mode": "max"}, 2, 3),
    ([1.0, 1.0], {"patience": 1}, 1, 2),
    # a NaN never counts as the best
    ([1.0, math.nan, math.nan], {"patience": 2}, 1, 3),
])
def test_early_stopping_rule(values, spec, best, stopped):
    stopping, trainer = scripted(values, **spec)
    assert stopping.best_epoch == best
    assert trainer.stop == ((stopped, "early_stopping") if stopped else None)
    assert trainer.model.weight.item() == best  # the best epoch's weights are back


def test_early_stopping_without_restore_keeps_the_last_weights():
    stopping, trainer = scripted([1.0, 2.0, 3.0], patience=2, restore_best=False)
    assert trainer.stop == (3, "early_stopping") and trainer.model.weight.item() == 3


def first_stop(values: list[float], patience: int) -> tuple[int, int | None]:
    """The rule for a maximized metric without min_delta: (best epoch, stop epoch or None)."""
    best = 1
    for epoch in range(2, len(values) + 1):
        if values[epoch - 1] > values[best - 1]:
            best = epoch
        elif epoch - best >= patience:
            return best, epoch
    return best, None


def test_early_stopping_stops_at_the_right_epoch_and_restores_the_best_weights():
    spec = tiny(model={"hidden": [64]}, optimizer={"name": "adam", "lr": 0.01},
                training={"epochs": 20})
    reference = EpochRecorder(weights=True)
    trainer_for(spec, [reference]).fit()  # the same seeded run, never stopped
    accuracy = reference.series("val/accuracy")
    best, stop = first_stop(accuracy, patience=3)
    assert stop is not None, accuracy  # the setup must plateau, or the test shows nothing

    stopped = EpochRecorder()
    trainer = trainer_for(merge(spec, {"regularization": {"early_stopping": {
        "patience": 3, "monitor": "val/accuracy"}}}), [stopped])
    result = trainer.fit()

    assert (result["stopped_epoch"], result["best_epoch"]) == (stop, best)
    assert result["stop_reason"] == "early_stopping" and result["epochs_run"] == stop
    assert stopped.series("val/accuracy") == accuracy[:stop]
    for key, value in reference.states[best - 1].items():
        torch.testing.assert_close(trainer.model.state_dict()[key], value, rtol=0, atol=0)
    assert result["val/accuracy"] == result["best/val/accuracy"] == accuracy[best - 1]


# -- gradient clipping -------------------------------------------------------------------------
class GradSpy(Callback):
    """Gradients as backward left them and as the optimizer receives them."""

    def __init__(self):
        self.before: list[torch.Tensor] = []
        self.after: list[torch.Tensor] = []

    def _grads(self, trainer: TrainerView) -> torch.Tensor:
        return torch.cat([p.grad.flatten() for p in trainer.model.parameters()])

    def on_after_backward(self, trainer: TrainerView) -> None:
        self.before.append(self._grads(trainer).clone())

    def on_before_update(self, trainer: TrainerView) -> None:
        self.after.append(self._grads(trainer).clone())


def test_clipping_by_norm_bounds_the_total_gradient_norm():
    spy = GradSpy()
    trainer_for(tiny(training={"epochs": 2, "grad_clip_norm": 0.5}), [spy]).fit()
    before = [g.norm().item() for g in spy.before]
    after = [g.norm().item() for g in spy.after]
    assert max(before) > 0.5  # clipping had something to do
    assert max(after) <= 0.5 * (1 + 1e-5)
    for raw, clipped, g_raw, g_clipped in zip(before, after, spy.before, spy.after,
                                              strict=True):
        if raw <= 0.5:
            torch.testing.assert_close(g_clipped, g_raw)  # small gradients pass unchanged
        else:
            assert clipped == pytest.approx(0.5, rel=1e-4)
            torch.testing.assert_close(g_clipped, g_raw * (0.5 / raw))  # same direction


def test_clipping_by_value_bounds_every_gradient_element():
    spy = GradSpy()
    trainer_for(tiny(training={"epochs": 2, "grad_clip_value": 0.01}), [spy]).fit()
    assert max(g.abs().max().item() for g in spy.before) > 0.01
    assert max(g.abs().max().item() for g in spy.after) <= 0.01
    for g_raw, g_clipped in zip(spy.before, spy.after, strict=True):
        torch.testing.assert_close(g_clipped, g_raw.clamp(-0.01, 0.01))


# -- learning-rate schedules -------------------------------------------------------------------
def cosine(lr: float, floor: float, k: int, n: int) -> float:
    return floor + (lr - floor) * 0.5 * (1 + math.cos(math.pi * k / n))


@pytest.mark.parametrize(("schedule", "expected"), [
    ({"name": "constant"}, [0.1] * 6),
    ({"name": "step", "step_epochs": 2, "gamma": 0.5}, [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]),
    ({"name": "exponential", "gamma": 0.5}, [0.1 * 0.5 ** e for e in range(6)]),
    ({"name": "cosine", "min_lr": 0.01}, [cosine(0.1, 0.01, e, 6) for e in range(6)]),
    ({"name": "warmup", "warmup_epochs": 2},
     [0.1 / 3, 0.2 / 3] + [cosine(0.1, 0.0, k, 4) for k in range(4)]),
])
def test_schedule_lr_curve(schedule, expected):
    recorder = EpochRecorder()
    trainer_for(tiny(schedule=schedule, training={"batch_size": "full"}), [recorder]).fit()
    assert recorder.series("lr") == pytest.approx(expected, rel=1e-9)


# -- full-batch and mini-batch descent ---------------------------------------------------------
class BatchSpy(Callback):
    def on_train_start(self, trainer: TrainerView) -> None:
        self.batches: list[torch.Tensor] = []
        trainer.model.register_forward_pre_hook(
            lambda module, args: self.batches.append(args[0]) if module.training else None)


def test_full_batch_descent_takes_one_exact_gradient_step_per_epoch():
    spy = BatchSpy()
    trainer = trainer_for(tiny(training={"epochs": 1, "batch_size": "full"}), [spy])
    train = trainer.splits["train"]
    w0 = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    loss = trainer.objective.loss(trainer.model(train.x), train.y)  # the whole training set
    grads = torch.autograd.grad(loss, list(trainer.model.parameters()))
    trainer.fit()
    assert trainer.step == 1 and [len(b) for b in spy.batches] == [len(train)]
    for (name, param), grad in zip(trainer.model.named_parameters(), grads, strict=True):
        torch.testing.assert_close(param.detach(), w0[name] - 0.1 * grad, rtol=1e-5,
                                   atol=1e-6)


def test_mini_batch_descent_visits_every_example_once_per_epoch():
    spy = BatchSpy()
    trainer = trainer_for(tiny(training={"epochs": 2, "batch_size": 100}), [spy])
    n = len(trainer.splits["train"])
    trainer.fit()
    per_epoch = math.ceil(n / 100)
    assert trainer.step == 2 * per_epoch
    sizes = [len(b) for b in spy.batches[:per_epoch]]
    assert sizes == [100] * (n // 100) + ([n % 100] if n % 100 else [])
    seen = torch.cat(spy.batches[:per_epoch])
    train = trainer.splits["train"].x.flatten(1)
    torch.testing.assert_close(seen.sum(0), train.sum(0))  # each example once, reshuffled
    assert not torch.equal(seen, train)


# -- precision and the runtime cap -------------------------------------------------------------
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_trains_and_callbacks_see_unscaled_gradients(precision):
    norms = {}
    for p in ("fp32", precision):
        spy = GradSpy()
        recorder = EpochRecorder()
        trainer = trainer_for(tiny(training={"epochs": 3, "precision": p}), [spy, recorder])
        trainer.fit()
        norms[p] = spy.before[0].norm().item()
        losses = recorder.series("train/loss")
        assert losses[-1] < losses[0] and all(math.isfinite(v) for v in losses)
    assert trainer.scaler.is_enabled() == (precision == "fp16")
    assert norms[precision] == pytest.approx(norms["fp32"], rel=0.05)  # not x 65536


def test_max_runtime_stops_after_the_epoch_that_passes_it():
    result = trainer_for(tiny(training={"epochs": 50, "max_runtime_s": 1e-6})).fit()
    assert (result["stopped_epoch"], result["stop_reason"], result["epochs_run"]) == (
        1, "max_runtime_s", 1)


# -- events ------------------------------------------------------------------------------------
class EventLog(Callback):
    def __init__(self):
        self.events: list[str] = []

    def on_train_start(self, trainer: TrainerView) -> None:
        self.events.append("train_start")

    def on_step_end(self, trainer: TrainerView) -> None:
        self.events.append(f"step {trainer.step}")

    def on_train_end(self, trainer: TrainerView) -> None:
        self.events.append("train_end")


class DuckLog:
    """Not a Callback: the loop calls the hooks it has."""

    def __init__(self):
        self.epochs: list[int] = []

    def on_epoch_end(self, trainer: TrainerView, metrics: dict[str, float]) -> None:
        self.epochs.append(trainer.epoch)


def test_the_loop_calls_each_callbacks_hooks_in_order_and_only_those_it_has():
    log, duck, updates = EventLog(), DuckLog(), []
    hooked = Callback()
    hooked.on_before_update = lambda trainer: updates.append(trainer.step)  # type: ignore
    trainer = trainer_for(tiny(training={"epochs": 2, "batch_size": "full"}), [log, duck, hooked])
    trainer.fit()
    assert log.events == ["train_start", "step 1", "step 2", "train_end"]
    assert duck.epochs == [0, 1]
    assert updates == [0, 1]  # before each update, the step not counted yet
    assert [hook.__self__ for hook in trainer._hooks["on_step_end"]] == [log]
    assert trainer._hooks["on_after_backward"] == []
