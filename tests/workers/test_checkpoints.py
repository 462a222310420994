"""Checkpoints resume a run exactly; a NaN loss stops training within one step."""

from __future__ import annotations

import os

import pytest
import torch

from services.contract.spec import ExperimentSpec
from tests.utils.specs import mlp_spec
from workers.run import prepare, seed_everything, to_splits
from workers.training import checkpoints
from workers.training.build import build_trainer
from workers.training.loop import Diverged, Trainer

CPU = torch.device("cpu")


def _trainer(spec: ExperimentSpec) -> Trainer:
    seed_everything(spec.training.seed)
    bundle, objective, model = prepare(spec, [], CPU)
    return build_trainer(spec, model, objective, to_splits(bundle, CPU), device=CPU)


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    spec = ExperimentSpec.model_validate(mlp_spec(
        data={"name": "xor", "params": {"n": 200}}, model={"hidden": [8]},
        optimizer={"name": "adam", "lr": 0.01},
        regularization={"dropout": 0.2, "early_stopping": {"patience": 50}},
        training={"epochs": 4, "batch_size": 16}))
    straight = _trainer(spec)
    straight.fit()

    half = ExperimentSpec.model_validate({**spec.model_dump(), "training": {
        **spec.training.model_dump(), "epochs": 2}})
    first = _trainer(half)
    first.fit()
    path = tmp_path / "job.pt"
    checkpoints.save(path, first.state_dict())
    resumed = _trainer(spec)
    resumed.load_state_dict(checkpoints.load(path))
    assert resumed.start_epoch == 2 and resumed.step == first.step
    resumed.fit()
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert resumed.step == straight.step


def test_checkpoints_load_without_unpickling_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"payload": os.system}, path)  # a reference to code that could run
    with pytest.raises(Exception, match="[Ww]eights only"):
        checkpoints.load(path)


def test_nan_loss_stops_within_one_step():
    spec = ExperimentSpec.model_validate(mlp_spec(
        data={"name": "function", "params": {"fn": "square", "n": 400}},
        model={"hidden": [256, 256]}, optimizer={"name": "sgd", "lr": 10.0},
        training={"epochs": 3, "batch_size": 8}))
    trainer = _trainer(spec)
    with pytest.raises(Diverged, match="diverged at step") as info:
        trainer.fit()
    step = int(str(info.value).split("diverged at step ")[1].split(":")[0])
    assert step == trainer.step  # the failing step was not applied
    assert trainer.epoch == 0 and step < 40  # the first epoch has 40 steps


def test_device_placement_on_the_cpu():
    from workers.run import pick_device, to_device

    assert pick_device(0).type == "cpu"
    if not torch.cuda.is_available():  # no GPU here: a GPU request still trains, on the CPU
        assert pick_device(1).type == "cpu"
    moved = to_device([[1.0, 2.0]], torch.device("cpu"))
    assert moved.device.type == "cpu" and moved.shape == (1, 2)
