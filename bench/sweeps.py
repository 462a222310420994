"""Row 3: sweep throughput.

A sweep of N short trainings (an MLP on digits, about 0.3 s of compute each) on 2 CPUs through
REST, against the machine's limit L measured in the same run (the same N trainings in two plain
processes side by side), and against a straightforward Ray Tune script with default settings
(a function trainable, 1 CPU a trial). The sequential time (one plain process) is reported
beside them.

"About 0.3 s of compute" defines the workload (BENCHMARKS.md, row 3), so the number of epochs is
measured, not fixed: the same epochs take several times longer on a slow day than on a fast one
on these shared machines (BENCHMARKS.md), and a fixed per-trial cost weighs that much more
against the shorter trainings.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bench.service import _settings
from bench.workloads import digits_tensors
from tests.utils.server import ServerThread

TRIAL_COMPUTE_S = 0.3
TINY_EPOCHS = 5


def calibrated_epochs(target_s: float = TRIAL_COMPUTE_S) -> int:
    """The epochs for which one plain training takes about `target_s` on this machine now."""
    short_training(0, epochs=2)  # warm
    timings = []
    for _ in range(3):  # the fastest of three: a first run still pays for warming up
        started = time.perf_counter()
        short_training(0, epochs=10)
        timings.append(time.perf_counter() - started)
    per_epoch = min(timings) / 10
    return max(5, min(200, round(target_s / per_epoch)))


def short_training(seed: int, epochs: int) -> float:
    """The plain version of one trial; returns its validation accuracy."""
    torch.manual_seed(seed)
    x, y, x_val, y_val = digits_tensors()
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
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
    tune.report({"val_accuracy": short_training(config["seed"], config["epochs"])})


def default_tune(trials: int, epochs: int) -> float:
    import ray
    from ray import tune

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        tune.Tuner(tune.with_resources(_tune_trainable, {"cpu": 1}),
                   param_space={"seed": tune.grid_search(list(range(trials))),
                                "epochs": epochs},
                   run_config=tune.RunConfig(storage_path=tmp, verbose=0)).fit()
        return time.perf_counter() - started


def _sweep(trials: int, epochs: int) -> dict[str, Any]:
    return {"name": "bench-sweep",
            "base": {"name": "bench-trial", "project": "bench", "data": {"name": "digits"},
                     "model": {"kind": "mlp", "hidden": [64]},
                     "optimizer": {"name": "adam", "lr": 0.003},
                     "training": {"epochs": epochs}, "resources": {"cpus": 1},
                     # The same trainings as the baselines: no per-layer instrumentation
                     # (row 1 measures that), still an MLflow run, metrics and model each.
                     "diagnostics": {"grad_norms": False, "update_norms": False,
                                     "weight_norms": False, "activation_stats": False,
                                     "plots": False}},
            "space": {"training.seed": {"type": "grid", "values": list(range(trials))}},
            "search": {"algorithm": "grid", "metric": "val/accuracy", "mode": "max",
                       "max_concurrent": 2}}


def layerwise_sweep(trials: int, epochs: int) -> float:
    """Seconds from submit to succeeded on a warm service: a 2-trial sweep ran first, so the
    sweep driver's worker has its imports done, as on a service that has been up. Tune still
    starts fresh trial actors for the timed sweep."""
    with tempfile.TemporaryDirectory() as tmp, ServerThread(_settings(Path(tmp))) as server:
        client = server.client()
        client.wait_sweep(client.submit_sweep(_sweep(2, epochs)).id, poll_s=0.2)
        started = time.perf_counter()
        done = client.wait_sweep(client.submit_sweep(_sweep(trials, epochs)).id, poll_s=0.2)
        seconds = time.perf_counter() - started
        assert done.status == "succeeded", done.error
        return seconds


def sequential_plain(trials: int, epochs: int) -> float:
    started = time.perf_counter()
    for seed in range(trials):
        short_training(seed, epochs)
    return time.perf_counter() - started


SIDE_BY_SIDE = """
import sys, time, torch
torch.set_num_threads(1)
from bench.sweeps import short_training
short_training(0, 2)  # warm, as the sequential baseline is
started = time.perf_counter()
for seed in range(int(sys.argv[1]), int(sys.argv[2]), 2):
    short_training(seed, int(sys.argv[3]))
print(time.perf_counter() - started)
"""


def side_by_side_plain(trials: int, epochs: int) -> float:
    """The machine's limit L: the same trainings in two plain processes at once (no Ray, no
    Tune, no MLflow), each taking every other seed; the slower one's training time. Two
    trainings side by side on these VMs each run slower than one alone (BENCHMARKS.md)."""
    root = Path(__file__).resolve().parents[1]
    workers = [subprocess.Popen([sys.executable, "-c", SIDE_BY_SIDE, str(first), str(trials),
                                 str(epochs)], cwd=root, stdout=subprocess.PIPE, text=True)
               for first in (0, 1)]
    seconds = [float(worker.communicate(timeout=3600)[0].split()[-1]) for worker in workers]
    return max(seconds)


def run(trials: int, tiny: bool = False) -> list[dict[str, Any]]:
    import ray

    # Row 2's Ray runs a dashboard and a job agent for Ray Jobs; this row measures on a Ray as
    # the service starts it, which the Tune baseline then shares.
    ray.shutdown()
    torch.set_num_threads(1)
    epochs = TINY_EPOCHS if tiny else calibrated_epochs()
    # Before and after the sweep: the machine's speed drifts over a minute (tiny: that it runs).
    before = sequential_plain(trials, epochs)
    limit_before = side_by_side_plain(trials, epochs)
    ours = layerwise_sweep(trials, epochs)
    if tiny:
        limit, sequential = limit_before, before
    else:
        limit = (limit_before + side_by_side_plain(trials, epochs)) / 2
        sequential = (before + sequential_plain(trials, epochs)) / 2
    tune_s = default_tune(trials, epochs)
    ratio = ours / limit
    return [{"row": f"3 sweep throughput, {trials} trials via REST",
             "baseline": "two plain processes side by side (L); default Ray Tune",
             "ratio": ratio, "layerwise_s": ours, "limit_s": limit, "sequential_s": sequential,
             "limit_vs_sequential": limit / sequential, "default_tune_s": tune_s,
             "tune_vs_layerwise": tune_s / ours, "epochs": epochs,
             "plain_training_s": sequential / trials,
             "target": "<= 1.15x L and >= 10x faster than default Tune",
             "met": ratio <= 1.15 and tune_s >= 10 * ours}]
