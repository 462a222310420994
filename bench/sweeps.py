"""Row 3: sweep throughput.

A sweep of N short trainings (an MLP on digits, about 0.3 s of compute each) on 2 CPUs through
REST, against the same N trainings one after another in one plain process, and against a
straightforward Ray Tune script with default settings (a function trainable, 1 CPU a trial).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bench.service import _settings
from bench.workloads import digits_tensors
from tests.utils.server import ServerThread

EPOCHS = 20


def short_training(seed: int) -> float:
    """The plain version of one trial; returns its validation accuracy."""
    torch.manual_seed(seed)
    x, y, x_val, y_val = digits_tensors()
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(EPOCHS):
        for index in torch.randperm(len(x), generator=generator).split(64):
            loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return float((model(x_val).argmax(1) == y_val).float().mean())


def _tune_trainable(config: dict[str, Any]) -> None:
    from ray import tune

    torch.set_num_threads(1)
    tune.report({"val_accuracy": short_training(config["seed"])})


def default_tune(trials: int) -> float:
    import ray
    from ray import tune

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        tune.Tuner(tune.with_resources(_tune_trainable, {"cpu": 1}),
                   param_space={"seed": tune.grid_search(list(range(trials)))},
                   run_config=tune.RunConfig(storage_path=tmp, verbose=0)).fit()
        return time.perf_counter() - started


def _sweep(trials: int) -> dict[str, Any]:
    return {"name": "bench-sweep",
            "base": {"name": "bench-trial", "project": "bench", "data": {"name": "digits"},
                     "model": {"kind": "mlp", "hidden": [64]},
                     "optimizer": {"name": "adam", "lr": 0.003},
                     "training": {"epochs": EPOCHS}, "resources": {"cpus": 1},
                     # The same trainings as the baselines: no per-layer instrumentation
                     # (row 1 measures that), still an MLflow run, metrics and model each.
                     "diagnostics": {"grad_norms": False, "update_norms": False,
                                     "weight_norms": False, "activation_stats": False,
                                     "plots": False}},
            "space": {"training.seed": {"type": "grid", "values": list(range(trials))}},
            "search": {"algorithm": "grid", "metric": "val/accuracy", "mode": "max",
                       "max_concurrent": 2}}


def layerwise_sweep(trials: int) -> float:
    """Seconds from submit to succeeded on a warm service: a 2-trial sweep ran first, so the
    sweep driver's worker has its imports done, as on a service that has been up. Tune still
    starts fresh trial actors for the timed sweep."""
    with tempfile.TemporaryDirectory() as tmp, ServerThread(_settings(Path(tmp))) as server:
        client = server.client()
        client.wait_sweep(client.submit_sweep(_sweep(2))["id"], poll_s=0.2)
        started = time.perf_counter()
        done = client.wait_sweep(client.submit_sweep(_sweep(trials))["id"], poll_s=0.2)
        seconds = time.perf_counter() - started
        assert done["status"] == "succeeded", done.get("error")
        return seconds


def run(trials: int) -> list[dict[str, Any]]:
    torch.set_num_threads(1)
    started = time.perf_counter()
    for seed in range(trials):
        short_training(seed)
    sequential = time.perf_counter() - started
    ours = layerwise_sweep(trials)
    tune_s = default_tune(trials)
    ratio = ours / sequential
    return [{"row": f"3 sweep throughput, {trials} trials via REST",
             "baseline": "sequential plain loop; default Ray Tune", "ratio": ratio,
             "layerwise_s": ours, "sequential_s": sequential, "default_tune_s": tune_s,
             "target": "<= 0.75x sequential and faster than default Tune",
             "met": ratio <= 0.75 and ours < tune_s}]
