"""Run one experiment from its spec: data, model, the loop, MLflow. What a Ray task calls."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mlflow
import numpy as np
import torch

from models import build_model
from models.objectives import Objective
from services.spec import ExperimentSpec
from workers import checkpoints
from workers.callbacks import (
    Callback,
    EpochArtifactLogger,
    EpochMetricLogger,
    LayerNormLogger,
    ProgressReporter,
)
from workers.data import DataBundle, load_data
from workers.diagnostics import Diagnostics
from workers.loop import Split, Trainer
from workers.model_report import log_model_report
from workers.norms import LayerNormProbe
from workers.tracking import RunTracker

Report = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs from the service's settings; passed with every task, since a
    worker on another node does not share the service's environment."""

    tracking_uri: str
    home: str
    data_roots: list[str] = field(default_factory=lambda: ["./data"])
    checkpoint_every_s: float = 2.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(gpus: float) -> torch.device:
    """CUDA when the job asked for a GPU and one is visible; the CPU otherwise."""
    return torch.device("cuda") if gpus > 0 and torch.cuda.is_available() else torch.device("cpu")


def set_threads(cpus: float) -> None:
    """One torch thread per CPU of the job's share: more threads than the share made each
    training 5-9x slower on a shared 2-core machine."""
    torch.set_num_threads(max(1, int(cpus)))


def to_splits(bundle: DataBundle, device: torch.device) -> dict[str, Split]:
    return {name: Split(torch.as_tensor(x).to(device), torch.as_tensor(y).to(device))
            for name, (x, y) in bundle.splits().items()}


def prepare(spec: ExperimentSpec, data_roots: list[str], device: torch.device):
    """The data, objective and model a spec describes (used by the worker and the dry run)."""
    bundle = load_data(spec.data, spec.task, data_roots)
    objective = Objective.resolve(bundle.task, getattr(spec.model, "output", "auto"), spec.loss)
    model = build_model(spec.model, bundle.shape(), dropout=spec.regularization.dropout)
    return bundle, objective, model.to(device)


def run_experiment(job_id: str, spec_payload: dict[str, Any], settings: WorkerSettings,
                   report: Report = lambda update: None, *, resume_run_id: str | None = None
                   ) -> dict[str, Any]:
    """Train the experiment and record it in MLflow. Returns the final metrics.

    `report` receives {"mlflow_run_id", "mlflow_experiment_id"} once the run exists, then
    {"progress": ...} after every epoch. With `resume_run_id` (a retry after a crash), the
    MLflow run continues and training resumes from the job's last checkpoint, if any.
    """
    spec = ExperimentSpec.model_validate(spec_payload)
    set_threads(spec.resources.cpus)
    seed_everything(spec.training.seed)
    device = pick_device(spec.resources.gpus)
    bundle, objective, model = prepare(spec, settings.data_roots, device)
    mlflow.set_tracking_uri(settings.tracking_uri)
    tracker = RunTracker.start(spec, job_id=job_id, tracking_uri=settings.tracking_uri,
                               home=settings.home, run_id=resume_run_id)
    report({"mlflow_run_id": tracker.run_id, "mlflow_experiment_id": tracker.experiment_id})
    saved = checkpoints.checkpoint_path(settings.home, job_id)
    state = checkpoints.load(saved) if resume_run_id else None
    try:
        layers = model.layer_names()
        tracker.sink.call_soon(lambda: tracker.log_spec(spec))
        tracker.sink.call_soon(lambda: tracker.log_json(layers, "layers.json"))
        splits = to_splits(bundle, device)
        pretrain_steps = 0 if state else model.pretrain(
            splits["train"].x, splits["train"].y, objective, tracker.sink.log)
        diagnostics = Diagnostics(spec, model, tracker, bundle.shape())
        trainer = Trainer(spec, model, objective, splits, device=device,
                          callbacks=diagnostics.attach([
                              *_callbacks(spec, model, tracker, report),
                              checkpoints.CheckpointEveryEpoch(
                                  saved, every_s=settings.checkpoint_every_s)],
                              splits["train"].x))
        trainer.step = pretrain_steps  # fine-tuning steps follow the pretraining steps
        if state:
            trainer.load_state_dict(state)
            result_extra = {"resumed_from_epoch": trainer.start_epoch}
        else:
            result_extra = {}
        result = {**trainer.fit(), **result_extra}
        result["param_count"] = sum(p.numel() for p in model.parameters())
        result |= diagnostics.after_training(
            {name: (split.x, split.y) for name, split in splits.items()}, objective, result,
            step=max(0, trainer.step - 1), device=device)
        log_model_report(tracker, model.after_training(
            {name: (split.x, split.y) for name, split in splits.items()}))
        tracker.log_model(model)
    except BaseException:
        tracker.finish("FAILED")
        raise
    tracker.finish("FINISHED")
    saved.unlink(missing_ok=True)
    return result


def _callbacks(spec: ExperimentSpec, model: Any, tracker: RunTracker, report: Report
               ) -> list[Callback]:
    callbacks: list[Callback] = [EpochMetricLogger(tracker.sink), ProgressReporter(report),
                                 EpochArtifactLogger(tracker.log_text)]
    diag = spec.diagnostics
    if diag.grad_norms or diag.update_norms or diag.weight_norms:
        probe = LayerNormProbe(model.layer_groups(), grads=diag.grad_norms,
                               updates=diag.update_norms, weights=diag.weight_norms)
        callbacks.insert(0, LayerNormLogger(probe, tracker.sink, every_steps=diag.every_steps))
    return callbacks
