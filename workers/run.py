"""Run one experiment from its spec: data, model, the loop, MLflow. What a Ray task calls."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mlflow
import numpy as np
import torch

from models.base import LayerwiseModel
from models.objectives import Objective
from services.contract.spec import ExperimentSpec
from services.contract.tags import STORED
from workers.data import DataBundle
from workers.data.statistics import measure as measure_data
from workers.diagnostics.expectation_checks import evaluate_experiment
from workers.diagnostics.pretraining_stages import PretrainingStages
from workers.diagnostics.session import Diagnostics
from workers.prepare import prepare
from workers.tracking.run_tracker import RunTracker
from workers.training import checkpoints
from workers.training.build import build_trainer
from workers.training.callback_base import Callback, TrainerView
from workers.training.data_parallel import DataParallel
from workers.training.evaluation import Split
from workers.training.logging_callbacks import (
    EpochArtifactLogger,
    EpochMetricLogger,
    PerLayerNormLogger,
    ProgressReporter,
)
from workers.training.loop import Diverged
from workers.training.norms import PerLayerNorms
from workers.worker_settings import WorkerSettings

Report = Callable[[dict[str, Any]], None]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(gpus: float) -> torch.device:
    """CUDA when the job asked for a GPU and one is visible; the CPU otherwise. On CUDA, cuDNN
    picks the fastest kernels for the (fixed) batch shapes; TF32 is left off so results match
    the CPU's fp32 (precision: bf16/fp16 is the opt-in for speed)."""
    if gpus > 0 and torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        return torch.device("cuda")
    return torch.device("cpu")


def set_threads(cpus: float) -> None:
    """One torch thread per CPU of the job's share: more threads than the share made each
    training several times slower on a shared machine (BENCHMARKS.md)."""
    torch.set_num_threads(max(1, int(cpus)))


def to_device(array: Any, device: torch.device) -> torch.Tensor:
    """Host arrays to the device; to a GPU through pinned memory without blocking the host."""
    tensor = torch.as_tensor(array)
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def to_splits(bundle: DataBundle, device: torch.device) -> dict[str, Split]:
    return {name: Split(to_device(x, device), to_device(y, device))
            for name, (x, y) in bundle.splits().items()}


class RunAbandoned(RuntimeError):
    """Raised by a callback when this process must stop without closing the run: another
    attempt of the same job now continues it (`workers.runtime.orphan_guard`)."""


class RunHooks(Callback):
    """A caller's part in one run: a loop callback that also hears the run around the loop
    (a sweep trial's Tune reporter, a Ray worker's orphan guard). Every hook is optional."""

    def on_run_start(self, tracker: RunTracker) -> None:
        """The MLflow run exists; the trainer does not yet."""

    def log_model(self, tracker: RunTracker, model: torch.nn.Module) -> None:
        """Record the trained model in the run, after training and its reports."""
        tracker.log_model(model)

    def before_finish(self, tracker: RunTracker) -> None:
        """The model is logged; the run is still open and the checkpoint kept. Raising leaves
        both (an orphaned worker must not finish a re-queued job)."""

    def close_status(self, tracker: RunTracker, exc: BaseException) -> str | None:
        """The MLflow status to close the run with when it raised `exc`; None leaves it open.
        An abandoned run stays open: the re-queued attempt continues it."""
        return None if isinstance(exc, RunAbandoned) else "FAILED"


@dataclass
class RunOptions:
    """What a caller varies in the one run: where it is recorded (a sweep trial: its tags, a
    parent run, the project's experiment), where training starts, the caller's hooks, and
    whether this is rank 0 of a data-parallel training."""

    tags: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None  # continue this MLflow run instead of creating one
    # Resume training from the job's own checkpoint (<home>/checkpoints/<job id>.pt), if it
    # exists. None: when continuing a run (`run_id`, or the job's run an attempt that died
    # left open), as a job retried after a crash does. A PBT trial continues its run from
    # Tune's checkpoint instead of this one (False).
    resume: bool | None = None
    experiment_id: str | None = None  # the project's MLflow experiment, when known
    hooks: RunHooks = field(default_factory=RunHooks)
    # Rank 0 of a data-parallel training (resources.workers > 1); the other ranks run
    # workers.runtime.ray_train.train_replica.
    parallel: DataParallel | None = None
    # The live diagnosis (judged at epoch ends, with the activation sample taken for it).
    # Off, the diagnosis after training is the same, without `detected_at_step`: the
    # baseline the bench measures its cost against (BENCHMARKS.md, row 7b).
    live_diagnosis: bool = True


def set_up(spec_payload: dict[str, Any], settings: WorkerSettings
           ) -> tuple[ExperimentSpec, torch.device, tuple[DataBundle, Objective, LayerwiseModel]]:
    """What every process of a training does first, in this order (the seeds before the model
    is built, so every rank of a data-parallel run builds the same weights): the spec, the
    job's threads and seeds, the device, then the data, objective and model."""
    # STORED: a job stored before the repair link left the spec's tags still runs.
    spec = ExperimentSpec.model_validate(spec_payload, context=STORED)
    set_threads(spec.resources.cpus)
    seed_everything(spec.training.seed)
    device = pick_device(spec.resources.gpus)
    return spec, device, prepare(spec, settings.data_roots, device,
                                 max_data_bytes=settings.max_data_bytes)


def run_experiment(job_id: str, spec_payload: dict[str, Any], settings: WorkerSettings,
                   report: Report = lambda update: None, options: RunOptions | None = None
                   ) -> dict[str, Any]:
    """Train the experiment and record it in MLflow. Returns the final metrics.

    `report` receives {"mlflow_run_id", "mlflow_experiment_id"} once the run exists, then
    {"progress": ...} after every epoch. With `options.run_id`, or when an attempt of the job
    that died left its run open, the MLflow run continues (logging only steps it does not hold
    yet); with `options.resume` (by default: when the run continues, a retry after a crash)
    training resumes from the job's last checkpoint, if any.
    """
    options = options or RunOptions()
    hooks = options.hooks
    spec, device, (bundle, objective, model) = set_up(spec_payload, settings)
    mlflow.set_tracking_uri(settings.tracking_uri)
    tracker = RunTracker.start(spec, job_id=job_id, tracking_uri=settings.tracking_uri,
                               home=settings.home, run_id=options.run_id,
                               extra_tags=options.tags, metrics_uri=settings.metrics_uri,
                               experiment_id=options.experiment_id)
    report({"mlflow_run_id": tracker.run_id, "mlflow_experiment_id": tracker.experiment_id})
    saved = checkpoints.checkpoint_path(settings.home, job_id)
    resume = tracker.continued if options.resume is None else options.resume
    state = checkpoints.load(saved) if resume else None
    if options.parallel is not None:
        state = options.parallel.broadcast(state)  # replicas resume from the same state
    try:
        layers = model.layer_names()
        tracker.sink.call_soon(lambda: tracker.log_spec(spec))
        tracker.sink.call_soon(lambda: tracker.log_json(layers, "layers.json"))
        splits = to_splits(bundle, device)
        hooks.on_run_start(tracker)
        stages = PretrainingStages(tracker.sink.log)  # each stage's loss, for the report too
        pretrain_steps = 0 if state else model.pretrain(
            splits["train"].x, splits["train"].y, objective, stages.log)
        diagnostics = Diagnostics(spec, model, tracker, bundle.shape(),
                                  live=options.live_diagnosis)
        diagnostics.pretraining = stages
        # the training split's statistics, for the diagnosis's bad_data findings
        diagnostics.recorders.data = measure_data(bundle, spec.data.standardize)
        if bundle.standardization:  # what data.standardize fitted, to map predictions back
            tracker.sink.call_soon(lambda: tracker.log_json(bundle.standardization,
                                                            "standardization.json"))
        progress = diagnostics.reporting(report)
        last = LastEpoch()
        trainer = build_trainer(spec, model, objective, splits, device=device,
                                callbacks=diagnostics.attach([
                                    *_callbacks(spec, model, tracker, progress),
                                    hooks, last,
                                    checkpoints.CheckpointEveryEpoch(
                                        saved, every_s=settings.checkpoint_every_s)],
                                    splits["train"].x, splits["train"].y, objective),
                                parallel=options.parallel)
        trainer.step = pretrain_steps  # fine-tuning steps follow the pretraining steps
        extra: dict[str, Any] = {}
        if state:
            trainer.load_state_dict(state)
            extra["resumed_from_epoch"] = trainer.start_epoch
        try:
            result = {**trainer.fit(), **extra}
        except Diverged as exc:  # the diagnosis (and the progress) say so before it fails;
            # the error carries it to the job's record (workers.runtime.in_flight)
            exc.diagnosis = diagnostics.diverged(str(exc), trainer.step, progress,
                                                 non_finite_data=exc.non_finite_data)
            raise
        # The test split is evaluated once, at the end: its metrics go to the run only here.
        tracker.sink.log({k: v for k, v in result.items() if k.startswith("test/")},
                         step=max(0, trainer.step - 1))
        result["param_count"] = sum(p.numel() for p in model.parameters())
        # the diagnosis, its plots, the model's own (model.after_training) and report.html
        result |= diagnostics.after_training(
            {name: (split.x, split.y) for name, split in splits.items()}, objective, result,
            step=max(0, trainer.step - 1), device=device)
        if spec.expect:  # judged on the final metrics, the last epoch's and the diagnosis
            held = evaluate_experiment(spec.expect, {**last.metrics, **result})
            result["expectations"] = held
            tracker.sink.call_soon(lambda: tracker.log_json(held, "expectations.json"))
        hooks.log_model(tracker, model)
        hooks.before_finish(tracker)
    except BaseException as exc:
        status = hooks.close_status(tracker, exc)
        if status is None:
            tracker.sink.close()
        else:
            tracker.finish(status)
        raise
    tracker.finish("FINISHED")
    saved.unlink(missing_ok=True)
    return result


class LastEpoch(Callback):
    """The last epoch's metrics, for the expectations on metrics the result does not repeat
    (train/accuracy, a model's own keys)."""

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}

    def on_epoch_end(self, trainer: TrainerView, metrics: dict[str, float]) -> None:
        self.metrics = dict(metrics)


def _callbacks(spec: ExperimentSpec, model: Any, tracker: RunTracker, report: Report
               ) -> list[Callback]:
    callbacks: list[Callback] = [EpochMetricLogger(tracker.sink), ProgressReporter(report),
                                 EpochArtifactLogger(tracker.log_text)]
    diag = spec.diagnostics
    if diag.grad_norms or diag.update_norms or diag.weight_norms:
        norms = PerLayerNorms(model.layer_groups(), grads=diag.grad_norms,
                              updates=diag.update_norms, weights=diag.weight_norms)
        callbacks.insert(0, PerLayerNormLogger(norms, tracker.sink,
                                               every_steps=diag.every_steps))
    return callbacks
