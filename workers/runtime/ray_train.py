"""Data-parallel training of one experiment over `resources.workers` Ray Train workers.

Ray Train's TorchTrainer starts the workers (each with the spec's cpus, gpus and custom
resources) and their process group (gloo on the CPU, NCCL on GPUs). Rank 0 runs the usual
`run_experiment` (MLflow run, per-layer norms, diagnostics, checkpoints, progress), the other
ranks run the same loop silently; `workers.training.data_parallel` keeps them in step. Rank 0
hands its result back through a small actor: Ray Train keeps reported metrics only with checkpoints.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import ray

from services.contract.spec import ExperimentSpec
from services.contract.tags import STORED
from workers.run import WorkerSettings, set_up, to_splits
from workers.runtime.worker_run import run_on_worker
from workers.training.build import build_trainer
from workers.training.data_parallel import DataParallel


@ray.remote(num_cpus=0)
class ResultBox:
    """Holds rank 0's result until the task that started the training collects it."""

    def __init__(self) -> None:
        self.result: dict[str, Any] | None = None

    def put(self, result: dict[str, Any]) -> None:
        self.result = result

    def get(self) -> dict[str, Any] | None:
        return self.result


def run_data_parallel(job_id: str, spec_payload: dict[str, Any], settings: WorkerSettings,
                      board: Any, resume_run_id: str | None = None,
                      service_tags: dict[str, str] | None = None) -> dict[str, Any]:
    """Train on `resources.workers` workers; returns rank 0's result (as run_experiment)."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.train.v2.api.exceptions import WorkerGroupError

    resources = ExperimentSpec.model_validate(spec_payload, context=STORED).resources
    per_worker = {"CPU": resources.cpus, **resources.custom}
    if resources.gpus:
        per_worker["GPU"] = resources.gpus
    box = ResultBox.remote()  # type: ignore[attr-defined]
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={"job_id": job_id, "spec": spec_payload, "settings": asdict(settings),
                           "board": board, "box": box, "resume_run_id": resume_run_id,
                           "service_tags": service_tags},
        scaling_config=ScalingConfig(num_workers=resources.workers, use_gpu=resources.gpus > 0,
                                     resources_per_worker=per_worker),
        torch_config=TorchConfig(backend="nccl" if resources.gpus else "gloo"),
        run_config=RunConfig(name=f"job-{job_id}",
                             storage_path=str(Path(settings.home, "ray_train").resolve())))
    try:
        trainer.fit()
    except WorkerGroupError as exc:  # the first failing rank's own error, not Train's wrapper
        failures = exc.worker_failures
        raise failures[min(failures)] from None
    result = ray.get(box.get.remote())
    if result is None:
        raise RuntimeError("rank 0 ended without a result")
    return result


def _train_worker(config: dict[str, Any]) -> None:
    from ray.train.torch import get_device

    parallel = DataParallel.from_process_group(get_device())
    settings = WorkerSettings(**config["settings"])
    if not parallel.is_leader:
        train_replica(config["spec"], settings, parallel)
        return
    result = run_on_worker(config["job_id"], config["spec"], settings, config["board"],
                           config["resume_run_id"], parallel, config.get("service_tags"))
    ray.get(config["box"].put.remote(result))


def train_replica(spec_payload: dict[str, Any], settings: WorkerSettings,
                  parallel: DataParallel) -> None:
    """A rank other than 0: the same data, model and loop as `run_experiment`, nothing logged.
    Its collectives come in the same order as rank 0's: the resume state, then the loop's."""
    spec, device, (bundle, objective, model) = set_up(spec_payload, settings)
    state = parallel.broadcast(None)
    splits = to_splits(bundle, device)
    pretrain_steps = 0 if state else model.pretrain(
        splits["train"].x, splits["train"].y, objective, lambda *args, **kwargs: None)
    trainer = build_trainer(spec, model, objective, splits, device=device, parallel=parallel)
    trainer.step = pretrain_steps
    if state:
        trainer.load_state_dict(state)
    trainer.fit()
