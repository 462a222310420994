"""Run one experiment from its spec: data, model, the loop, MLflow. What a Ray task calls."""

from __future__ import annotations

import json
import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mlflow
import numpy as np
import torch

from models import build_model
from models.objectives import Objective
from services.contract.spec import ExperimentSpec
from workers.data import DataBundle, load_data
from workers.diagnostics import Diagnostics
from workers.tracking.model_report import log_model_report
from workers.tracking.run_tracker import RunTracker
from workers.training import checkpoints
from workers.training.callbacks import (
    Callback,
    EpochArtifactLogger,
    EpochMetricLogger,
    LayerNormLogger,
    ProgressReporter,
)
from workers.training.data_parallel import DataParallel
from workers.training.loop import Split, Trainer
from workers.training.norms import LayerNormProbe
from workers.worker_settings import WorkerSettings

Report = Callable[[dict[str, Any]], None]
BUNDLE_CACHE_SIZE = 4
_bundles: OrderedDict[str, DataBundle] = OrderedDict()


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
    training 5-9x slower on a shared 2-core machine."""
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


def prepare(spec: ExperimentSpec, data_roots: list[str], device: torch.device, *,
            max_data_bytes: int | None = None):
    """The data, objective and model a spec describes. A data file is capped again here: it
    may have changed since the submission was checked."""
    bundle = _load_data(spec, data_roots, max_data_bytes)
    objective = Objective.resolve(bundle.task, getattr(spec.model, "output", "auto"), spec.loss)
    model = build_model(spec.model, bundle.shape(), dropout=spec.regularization.dropout)
    return bundle, objective, model.to(device)


class RunAbandoned(RuntimeError):
    """Raised by a callback when this process must stop without closing the run: another
    attempt of the same job now continues it (`workers.runtime.orphan_guard`)."""


def _close_as_failed(tracker: RunTracker, exc: BaseException) -> str | None:
    # An orphaned worker leaves the run open: the re-queued attempt continues it.
    return None if isinstance(exc, RunAbandoned) else "FAILED"


@dataclass
class RunOptions:
    """What a caller adds to the one run (a sweep trial: its tags, a parent run, callbacks
    that report to Tune, a checkpoint to start from)."""

    tags: dict[str, str] = field(default_factory=dict)
    # Built per run from the tracker, so a callback can log to the run.
    callbacks: Callable[[RunTracker], list[Callback]] = lambda tracker: []
    run_id: str | None = None  # continue this MLflow run instead of creating one
    # Resume training from the job's own checkpoint (<home>/checkpoints/<job id>.pt), if it
    # exists. None: when continuing a run (`run_id`), as a job retried after a crash does. A
    # PBT trial continues its run from Tune's checkpoint instead of this one (False).
    resume: bool | None = None
    experiment_id: str | None = None  # the project's MLflow experiment, when known
    before_fit: Callable[[Trainer], None] | None = None
    # Called after training and its reports, before the run is closed and the checkpoint
    # deleted; raising leaves both (an orphaned worker must not finish a re-queued job).
    before_finish: Callable[[], None] = lambda: None
    # What it returns (RunTracker.log_model: the model id) is not used.
    log_model: Callable[[RunTracker, torch.nn.Module], object] = RunTracker.log_model
    # The MLflow status to close the run with when training raises; None leaves it open.
    on_interrupt: Callable[[RunTracker, BaseException], str | None] = _close_as_failed
    # Rank 0 of a data-parallel training (resources.workers > 1); the other ranks run
    # workers.runtime.ray_train.train_replica.
    parallel: DataParallel | None = None


def _load_data(spec: ExperimentSpec, data_roots: list[str], max_bytes: int | None = None
               ) -> DataBundle:
    """A built-in dataset is a function of its params, so a worker process that runs many short
    jobs (a sweep's reused trial actor) generates it once; files are read every time."""
    if spec.data.source != "builtin":
        return load_data(spec.data, spec.task, data_roots, max_bytes=max_bytes)
    key = json.dumps([spec.data.model_dump(mode="json"), spec.task], sort_keys=True)
    if key not in _bundles:
        _bundles[key] = load_data(spec.data, spec.task, data_roots)
        if len(_bundles) > BUNDLE_CACHE_SIZE:
            _bundles.popitem(last=False)
    _bundles.move_to_end(key)
    return _bundles[key]


def run_experiment(job_id: str, spec_payload: dict[str, Any], settings: WorkerSettings,
                   report: Report = lambda update: None, options: RunOptions | None = None
                   ) -> dict[str, Any]:
    """Train the experiment and record it in MLflow. Returns the final metrics.

    `report` receives {"mlflow_run_id", "mlflow_experiment_id"} once the run exists, then
    {"progress": ...} after every epoch. With `options.run_id` the MLflow run continues (logging
    only steps it does not hold yet); with `options.resume` (by default: with a run_id, a
    retry after a crash) training resumes from the job's last checkpoint, if any.
    """
    options = options or RunOptions()
    spec = ExperimentSpec.model_validate(spec_payload)
    set_threads(spec.resources.cpus)
    seed_everything(spec.training.seed)
    device = pick_device(spec.resources.gpus)
    bundle, objective, model = prepare(spec, settings.data_roots, device,
                                       max_data_bytes=settings.max_data_bytes)
    mlflow.set_tracking_uri(settings.tracking_uri)
    tracker = RunTracker.start(spec, job_id=job_id, tracking_uri=settings.tracking_uri,
                               home=settings.home, run_id=options.run_id,
                               extra_tags=options.tags, metrics_uri=settings.metrics_uri,
                               experiment_id=options.experiment_id)
    report({"mlflow_run_id": tracker.run_id, "mlflow_experiment_id": tracker.experiment_id})
    saved = checkpoints.checkpoint_path(settings.home, job_id)
    resume = options.run_id is not None if options.resume is None else options.resume
    state = checkpoints.load(saved) if resume else None
    if options.parallel is not None:
        state = options.parallel.broadcast(state)  # replicas resume from the same state
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
                              *options.callbacks(tracker),
                              checkpoints.CheckpointEveryEpoch(
                                  saved, every_s=settings.checkpoint_every_s)],
                              splits["train"].x), parallel=options.parallel)
        trainer.step = pretrain_steps  # fine-tuning steps follow the pretraining steps
        extra: dict[str, Any] = {}
        if state:
            trainer.load_state_dict(state)
            extra["resumed_from_epoch"] = trainer.start_epoch
        if options.before_fit is not None:
            options.before_fit(trainer)
        result = {**trainer.fit(), **extra}
        # The test split is evaluated once, at the end: its metrics go to the run only here.
        tracker.sink.log({k: v for k, v in result.items() if k.startswith("test/")},
                         step=max(0, trainer.step - 1))
        result["param_count"] = sum(p.numel() for p in model.parameters())
        result |= diagnostics.after_training(
            {name: (split.x, split.y) for name, split in splits.items()}, objective, result,
            step=max(0, trainer.step - 1), device=device)
        log_model_report(tracker, model.after_training(
            {name: (split.x, split.y) for name, split in splits.items()}))
        options.log_model(tracker, model)
        options.before_finish()
    except BaseException as exc:
        status = options.on_interrupt(tracker, exc)
        if status is None:
            tracker.sink.close()
        else:
            tracker.finish(status)
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
