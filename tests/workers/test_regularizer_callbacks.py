"""The structure of the training engine: each regularizer is a callback built from its spec
fields by the registry, the loop fires the events in the documented order and knows no
regularizer, and callbacks' state (early stopping's best so far) survives a resume."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, get_args

import pytest
import torch

from models.base import DataShape
from models.builders import build_model
from models.kinds.mlp import MLPConfig
from services.contract.regularization_spec import RegularizationSpec
from services.contract.regularizer_kinds import (
    REGULARIZER_KINDS,
    Loc,
    RegularizerKind,
    default_at,
    value_at,
)
from services.contract.spec import ExperimentSpec
from tests.utils.specs import merge, mlp_spec
from tests.utils.training import CPU, EpochRecorder, trainer_for
from workers.prepare import prepare
from workers.run import seed_everything, to_splits
from workers.training import checkpoints, loop
from workers.training.build import build_trainer
from workers.training.callback_base import EVENTS, Callback
from workers.training.regularizers import registry
from workers.training.regularizers.base import Regularizer
from workers.training.regularizers.early_stopping import EarlyStopping

pytestmark = pytest.mark.usefixtures("one_thread")

# Regularization fields that no registry entry reads, and who acts on them instead.
ELSEWHERE = {
    ("regularization", "dropout"): "the model builder puts dropout layers in the model",
    ("regularization", "dropout_inference"): "workers.training.evaluation.evaluate",
}


def _spec_with(loc: Loc, value: Any) -> ExperimentSpec:
    override: dict[str, Any] = {loc[-1]: value}
    for name in reversed(loc[:-1]):
        override = {name: override}
    return ExperimentSpec.model_validate(merge(mlp_spec(model={"hidden": [8]}), override))


def _switched_on(loc: Loc) -> ExperimentSpec:
    """A spec with the field at `loc` moved off its default: a flag set, an unset number set,
    a number raised a little."""
    plain = _spec_with(("training", "epochs"), 2)
    default = default_at(plain, loc)
    if isinstance(default, bool):
        return _spec_with(loc, not default)
    if default is None:
        annotation = type(value_at(plain, loc[:-1])).model_fields[loc[-1]].annotation
        return _spec_with(loc, 2 if int in get_args(annotation) else 0.5)
    return _spec_with(loc, default + 0.1)


def _model_and_binary_inputs() -> tuple[Any, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model(MLPConfig(hidden=[8]), DataShape((16,), 3, "classification"))
    return model, torch.randint(0, 2, (32, 16)).float()


# -- the registry ------------------------------------------------------------------------------
def test_each_regularizer_is_built_exactly_when_one_of_its_switches_is_on():
    model, x = _model_and_binary_inputs()
    assert registry.build_regularizers(_spec_with(("training", "epochs"), 2), model, x) == []
    for regularizer in registry.REGULARIZERS:
        for loc in regularizer.kind.switches:
            spec = _switched_on(loc)
            assert [r.name for r in registry.REGULARIZERS if r.is_on(spec)] == [
                regularizer.name], loc
            built = registry.build_regularizers(spec, model, x)
            expected = regularizer.build(spec, model, x)
            assert len(built) == 1 and type(built[0]) is type(expected), loc


def test_every_regularization_field_has_a_regularizer_or_a_stated_home():
    spec = _spec_with(("training", "epochs"), 2)
    read = {loc for r in registry.REGULARIZERS for loc in (*r.kind.switches, *r.kind.settings)}
    for loc in read:  # each names a real field, with a default to tell "on" from
        value_at(spec, loc)
        default_at(spec, loc)
    fields = {("regularization", name) for name in RegularizationSpec.model_fields}
    assert fields - {loc[:2] for loc in read} - set(ELSEWHERE) == set()
    assert not set(ELSEWHERE) & {loc[:2] for loc in read}
    # The engine builds exactly the declared kinds, in the declared order (the numerics').
    assert [r.kind for r in registry.REGULARIZERS] == list(REGULARIZER_KINDS)


def test_bit_flips_of_inputs_that_are_not_binary_are_refused_when_the_trainer_is_built():
    model, _ = _model_and_binary_inputs()
    with pytest.raises(ValueError, match="input_flip_prob needs binary inputs"):
        registry.build_regularizers(_spec_with(("regularization", "input_flip_prob"), 0.1),
                                    model, torch.rand(32, 16))


class Negate(Callback):
    """A regularizer the loop has never heard of: negated inputs, a constant penalty, and a
    count of the gradient and weight adjustments it is offered."""

    def __init__(self) -> None:
        self.adjusted: list[str] = []

    def transform_input(self, trainer, x: torch.Tensor) -> torch.Tensor:
        return -x

    def penalty(self, trainer) -> torch.Tensor:
        return torch.tensor(0.25)

    def adjust_gradients(self, trainer) -> None:
        self.adjusted.append("gradients")

    def adjust_weights(self, trainer) -> None:
        self.adjusted.append("weights")


class InputSpy(Callback):
    def on_train_start(self, trainer) -> None:
        self.seen: list[torch.Tensor] = []
        trainer.model.register_forward_pre_hook(
            lambda module, args: self.seen.append(args[0]) if module.training else None)


def test_a_regularizer_in_the_registry_handed_to_the_build_is_applied_by_the_loop_unchanged():
    negate = Negate()
    kind = RegularizerKind("negate", switches=(("regularization", "input_noise_std"),))
    added = Regularizer(kind, build=lambda spec, model, train_x: negate)
    spy, recorder = InputSpy(), EpochRecorder()
    spec = ExperimentSpec.model_validate(mlp_spec(regularization={"input_noise_std": 0.1},
                                                  training={"epochs": 1, "batch_size": "full"}))
    seed_everything(spec.training.seed)
    bundle, objective, model = prepare(spec, [], CPU)
    trainer = build_trainer(spec, model, objective, to_splits(bundle, CPU), device=CPU,
                            callbacks=[spy, recorder], regularizers=[added])
    assert trainer.callbacks == [negate, spy, recorder]  # the registry's, then the caller's
    trainer.fit()
    seen, train = spy.seen[0], trainer.splits["train"].x  # the batch: train, reshuffled
    assert seen.shape == train.shape and (seen <= 0).all() and seen.min() < 0
    torch.testing.assert_close(seen.sum(0), -train.sum(0))
    assert recorder.metrics[0]["train/penalty"] == pytest.approx(0.25)
    assert negate.adjusted == ["gradients", "weights"]  # one step


def test_the_loop_reads_no_regularization_setting():
    """Regularizers reach the loop only as callbacks: adding one changes no line of it."""
    assert "regularization" not in inspect.getsource(loop)
    assert not any(name.startswith("workers.training.regularizers") for name in _imported(loop))


def _imported(module: Any) -> set[str]:
    import ast
    tree = ast.parse(inspect.getsource(module))
    return {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}


# -- events ------------------------------------------------------------------------------------
def _recording(event: str) -> Any:
    empty = getattr(Callback, event)

    def hook(self, trainer, *args):
        self.fired.append(event)
        return empty(self, trainer, *args)
    return hook


class EveryEvent(Callback):
    def __init__(self) -> None:
        self.fired: list[str] = []


for _event in EVENTS:
    setattr(EveryEvent, _event, _recording(_event))


def test_a_step_fires_the_events_in_the_documented_order():
    spy = EveryEvent()
    trainer_for(mlp_spec(training={"epochs": 1, "batch_size": "full"}), [spy]).fit()
    assert spy.fired == list(EVENTS)  # one step, one epoch: each event once, in order


# -- callback state ----------------------------------------------------------------------------
NEVER_IMPROVES = {"early_stopping": {"patience": 2, "monitor": "val/loss", "min_delta": 1e3}}


def test_early_stopping_state_round_trips_through_the_trainers_checkpoint():
    spec = mlp_spec(regularization={"early_stopping": {"patience": 50}},
                    training={"epochs": 2})
    trainer = trainer_for(spec)
    trainer.fit()
    state = trainer.state_dict()
    kept = state["callbacks"]["early_stopping"]
    again = trainer_for(spec)
    again.load_state_dict(state)
    stopping = next(c for c in again.callbacks if isinstance(c, EarlyStopping))
    assert stopping.state_dict().keys() == kept.keys()
    assert (stopping.best_epoch, stopping.best_value) == (kept["best_epoch"], kept["best_value"])
    for key, value in kept["best_state"].items():
        assert torch.equal(stopping.best_state[key], value)


def test_a_resumed_run_stops_early_at_the_epoch_of_an_uninterrupted_one(tmp_path: Path):
    spec = mlp_spec(regularization=NEVER_IMPROVES, training={"epochs": 10})
    straight = trainer_for(spec)
    expected = straight.fit()
    assert (expected["stopped_epoch"], expected["best_epoch"]) == (3, 1)

    first = trainer_for(merge(spec, {"training": {"epochs": 2}}))
    assert "stop_reason" not in first.fit()
    checkpoints.save(tmp_path / "job.pt", first.state_dict())
    resumed = trainer_for(spec)
    resumed.load_state_dict(checkpoints.load(tmp_path / "job.pt"))
    result = resumed.fit()

    assert (result["stopped_epoch"], result["best_epoch"]) == (3, 1)
    assert result["val/loss"] == expected["val/loss"]  # epoch 1's weights, restored
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_two_callbacks_may_not_keep_their_state_under_one_key():
    class Twin(Callback):
        state_key = "early_stopping"

    with pytest.raises(ValueError, match="two callbacks keep their state"):
        trainer_for(mlp_spec(regularization={"early_stopping": {"patience": 2}}), [Twin()])
