"""Sweep trials driven directly (as Tune's trainables call them): each trial checkpoints to a
file of its own, a PBT continuation starts from Tune's checkpoint alone, and a trial cut off by
a crash continues its own MLflow run from its own checkpoint."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import ray
import torch
from mlflow.tracking import MlflowClient
from ray import tune

from services.contract.sweep_spec import SweepSpec
from tests.utils.settings import worker_settings
from tests.utils.specs import mlp_spec
from workers.runtime.progress_board import ProgressBoard
from workers.sweeps.context import TrialContext
from workers.sweeps.summary import ParentRun
from workers.sweeps.trial import RUN_ID_KEY, STATE_FILE, run_trial, trial_job_id
from workers.training import checkpoints

EPOCHS = 4


def _sweep(scheduler: dict) -> SweepSpec:
    base = mlp_spec(name="tiny", data={"name": "xor", "params": {"n": 100}},
                    model={"hidden": [4]}, training={"epochs": EPOCHS, "batch_size": 16},
                    diagnostics={"every_steps": 5, "plots": False})
    return SweepSpec.model_validate({
        "name": "trials", "base": base, "scheduler": scheduler,
        "space": {"optimizer.lr": {"type": "grid", "values": [0.01, 0.1]}},
        "search": {"algorithm": "grid", "metric": "val/loss", "mode": "min"}})


def _context(settings, sweep: SweepSpec, sweep_id: str) -> TrialContext:
    # checkpoint_every_s=0: every epoch, so every trial is longer than the interval
    worker = worker_settings(settings, checkpoint_every_s=0)
    parent = ParentRun.open(sweep, sweep_id, worker)
    return TrialContext(sweep_id=sweep_id, sweep=sweep.model_dump(mode="json"),
                        parent_run_id=parent.run_id, experiment_id=parent.experiment_id,
                        settings=worker, board=ProgressBoard.remote())


def _crash_at(monkeypatch: pytest.MonkeyPatch, epoch: int) -> None:
    """Kill the trial after `epoch`'s metrics are logged, before its checkpoint is written
    (the checkpoint then holds the epoch before), as a killed worker may."""
    save = checkpoints.CheckpointEveryEpoch.on_epoch_end

    def crashing(self, trainer, metrics) -> None:
        if trainer.epoch + 1 == epoch:
            raise SystemExit("killed")
        save(self, trainer, metrics)

    monkeypatch.setattr(checkpoints.CheckpointEveryEpoch, "on_epoch_end", crashing)


def _cut_off(monkeypatch, ctx: TrialContext, trial_id: str, config: dict, epoch: int) -> str:
    """Run the trial until a crash at `epoch`; returns its MLflow run id."""
    with monkeypatch.context() as patch, pytest.raises(SystemExit):
        _crash_at(patch, epoch)
        run_trial(config, ctx, trial_id)
    _, trials = ray.get(ctx.board.drain_all.remote())
    return trials[ctx.sweep_id][trial_id]["mlflow_run_id"]


def _trial_runs(ctx: TrialContext, trial_id: str) -> list:
    client = MlflowClient(tracking_uri=ctx.settings.tracking_uri)
    return client.search_runs([ctx.experiment_id], filter_string=(
        f"tags.`mlflow.parentRunId` = '{ctx.parent_run_id}' and "
        f"tags.`layerwise.trial_id` = '{trial_id}'"))


def _steps(ctx: TrialContext, run_id: str, key: str) -> list[int]:
    client = MlflowClient(tracking_uri=ctx.settings.tracking_uri)
    return [m.step for m in client.get_metric_history(run_id, key)]


def test_pbt_trials_checkpoint_apart_and_continue_from_tunes_checkpoint_only(
        ray_cluster, settings, monkeypatch):
    ctx = _context(settings, _sweep({"name": "pbt", "perturbation_interval": 1}), "pbt-files")
    run_a = _cut_off(monkeypatch, ctx, "a", {"optimizer.lr": 0}, epoch=3)
    _cut_off(monkeypatch, ctx, "b", {"optimizer.lr": 1}, epoch=2)

    home = ctx.settings.home
    mine = checkpoints.load(checkpoints.checkpoint_path(home, trial_job_id("pbt-files", "a")))
    theirs = checkpoints.load(checkpoints.checkpoint_path(home, trial_job_id("pbt-files", "b")))
    assert mine["epoch"] == 2 and theirs["epoch"] == 1  # neither overwrote the other
    assert not checkpoints.checkpoint_path(home, "pbt-files").exists()

    # PBT exploits b for a: a continues its run from b's weights after epoch 1, as Tune's
    # checkpoint says, not from a's own file (epoch 2) nor any other
    with tempfile.TemporaryDirectory() as folder:
        torch.save({"model": theirs["model"], "optimizer": theirs["optimizer"],
                    "step": theirs["step"], "epoch": 1}, Path(folder, STATE_FILE))
        final = run_trial({"optimizer.lr": 0}, ctx, "a", tune.Checkpoint.from_directory(folder))

    assert "resumed_from_epoch" not in final
    assert final["epoch"] == EPOCHS and final["steps"] == theirs["step"] * EPOCHS
    assert final[RUN_ID_KEY] == run_a and len(_trial_runs(ctx, "a")) == 1
    steps = _steps(ctx, run_a, "val/loss")
    assert len(steps) == EPOCHS == len(set(steps))


def test_a_trial_cut_off_by_a_crash_continues_its_run_from_its_checkpoint(
        ray_cluster, settings, monkeypatch):
    ctx = _context(settings, _sweep({"name": "fifo"}), "restored")
    run_id = _cut_off(monkeypatch, ctx, "t", {"optimizer.lr": 0}, epoch=3)

    final = run_trial({"optimizer.lr": 0}, ctx, "t", restored=True)  # Tune runs it again

    assert final[RUN_ID_KEY] == run_id and final["resumed_from_epoch"] == 2
    [run] = _trial_runs(ctx, "t")
    assert run.info.status == "FINISHED"
    assert run.data.tags["layerwise.job_id"] == "restored/t"
    assert run.data.tags["layerwise.sweep_id"] == "restored"
    steps = _steps(ctx, run_id, "val/loss")
    assert len(steps) == EPOCHS == len(set(steps))
    assert not checkpoints.checkpoint_path(ctx.settings.home, "restored/t").exists()
