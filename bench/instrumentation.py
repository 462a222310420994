"""Rows 1 and 5: the worker loop against the plain loop.

Row 1 (instrumentation overhead): the worker loop with per-layer gradient, update and weight
norms at every step and every 10 steps, logged to MLflow (SQLite, and an `mlflow server` over
HTTP or straight into its database), timed from the first step until every metric is stored;
1d, the norms computed and dropped, splits the cost between the norms and MLflow. Row 5
(compute efficiency): the worker loop with diagnostics off, in samples per second, and the
fraction of the machine's matmul peak. The baseline is the plain loop a careful script writes
(bench/workloads.py: the fused Adam, gradients set to None).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from mlflow.tracking import MlflowClient

from bench.workloads import bench_device, mlp_digits_spec, plain_training
from services.contract.spec import ExperimentSpec
from tests.utils.mlflow_server import start_mlflow_server, stop_mlflow_server
from workers.run import prepare, seed_everything, set_threads, to_splits
from workers.tracking.run_tracker import RunTracker
from workers.training.build import build_trainer
from workers.training.logging_callbacks import EpochMetricLogger, PerLayerNormLogger
from workers.training.norms import PerLayerNorms


class NullSink:
    """Takes the metrics and stores nothing: the norms' own cost, without MLflow's."""

    def log(self, metrics: dict[str, float], step: int) -> None:
        del metrics, step

    def log_rows(self, keys: list[str], rows: Any, steps: list[int], times: list[int]) -> None:
        del keys, rows, steps, times

    def close(self) -> None:
        return None


def layerwise_training(epochs: int, *, tracking_uri: str | None, home: str,
                       diagnostics: bool = True, metrics_uri: str | None = None,
                       every_steps: int = 1, store: bool = True) -> dict[str, float]:
    """The worker's loop as run_experiment drives it; with tracking_uri None, no MLflow.
    metrics_uri: the MLflow server's database, for metrics straight into it. store False:
    the norms are computed every `every_steps` and dropped (no MLflow)."""
    spec = ExperimentSpec.model_validate(mlp_digits_spec(
        epochs, diagnostics={"every_steps": every_steps, "grad_norms": diagnostics,
                             "update_norms": diagnostics, "weight_norms": diagnostics}))
    seed_everything(0)
    device = bench_device()
    bundle, objective, model = prepare(spec, [], device)
    tracker = (RunTracker.start(spec, job_id="bench", tracking_uri=tracking_uri, home=home,
                                metrics_uri=metrics_uri) if tracking_uri and store else None)
    sink: Any = tracker.sink if tracker is not None else NullSink()
    callbacks: list[Any] = []
    if tracker is not None or not store:
        callbacks.append(EpochMetricLogger(sink))
        if diagnostics:
            callbacks.insert(0, PerLayerNormLogger(PerLayerNorms(model.layer_groups()),
                                                    sink, every_steps=every_steps))
    trainer = build_trainer(spec, model, objective, to_splits(bundle, device), device=device,
                            callbacks=callbacks)
    started = time.perf_counter()
    trainer.fit()
    sink.close()  # every metric stored
    seconds = time.perf_counter() - started
    if tracker is not None:
        tracker.client.set_terminated(tracker.run_id)
    return {"seconds": seconds, "steps": trainer.step}


def median_ratio(run: Any, baseline: Any, repeats: int) -> tuple[float, float, float]:
    """Alternate the two, `repeats` times each, and return (ratio of medians, run s, base s):
    interleaving cancels the drift of a shared machine."""
    runs, bases = [], []
    for _ in range(repeats):
        bases.append(baseline()["seconds"])
        runs.append(run()["seconds"])
    run_s, base_s = statistics.median(runs), statistics.median(bases)
    return run_s / base_s, run_s, base_s


def _steps(every: int) -> str:
    return "step" if every == 1 else f"{every} steps"


def matmul_peak_gflops(threads: int, device: torch.device) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(1024, 1024, device=device), torch.randn(1024, 1024, device=device)
    for _ in range(3):
        a @ b
    synchronize(device)
    started, n = time.perf_counter(), 20
    for _ in range(n):
        a @ b
    synchronize(device)
    return 2 * 1024 ** 3 * n / (time.perf_counter() - started) / 1e9


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mlp_step_gflop(batch: int = 64) -> float:
    """Forward + backward FLOPs of one 64-256-256-10 step (about 3x the forward)."""
    forward = 2 * batch * (64 * 256 + 256 * 256 + 256 * 10)
    return 3 * forward / 1e9


def run(epochs: int, repeats: int, http_port: int) -> list[dict[str, Any]]:
    set_threads(1)  # the job's CPU share, as in the worker
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sqlite_uri = f"sqlite:///{root / 'mlflow.db'}"
        MlflowClient(tracking_uri=sqlite_uri).search_experiments()  # create the schema once

        def plain() -> dict[str, float]:
            return plain_training(epochs)

        for every, target in ((1, 1.10), (10, 1.03)):
            ratio, run_s, base_s = median_ratio(
                lambda every=every: layerwise_training(epochs, tracking_uri=sqlite_uri,
                                                       home=tmp, every_steps=every),
                plain, repeats)
            rows.append({"row": f"1a instrumentation every {_steps(every)}, MLflow SQLite",
                         "baseline": "plain PyTorch loop (fused Adam)", "ratio": ratio,
                         "layerwise_s": run_s, "baseline_s": base_s,
                         "target": f"<= {target:.2f}x", "met": ratio <= target})
        # Where the every-step cost comes from: the norms computed and dropped (no MLflow).
        ratio, run_s, base_s = median_ratio(
            lambda: layerwise_training(epochs, tracking_uri=None, home=tmp, store=False),
            plain, repeats)
        rows.append({"row": "1d norms every step, computed and dropped (no MLflow)",
                     "baseline": "plain PyTorch loop (fused Adam)", "ratio": ratio,
                     "layerwise_s": run_s, "baseline_s": base_s,
                     "target": "reference: 1a minus this is MLflow's share", "met": None})
        server_db = f"sqlite:///{root / 'server.db'}"
        server = start_mlflow_server(server_db, http_port, root)
        try:
            http_uri = f"http://127.0.0.1:{http_port}"
            http = median_ratio(
                lambda: layerwise_training(epochs, tracking_uri=http_uri, home=tmp),
                plain, repeats)
            direct = median_ratio(
                lambda: layerwise_training(epochs, tracking_uri=http_uri, home=tmp,
                                           metrics_uri=server_db),
                plain, repeats)
        finally:
            stop_mlflow_server(server)
        # 1b is bound by the stock server's own ingestion: a reference, not a target.
        references: tuple[tuple[str, tuple[float, float, float], float | None], ...] = (
            ("1b instrumentation every step, MLflow server over HTTP", http, None),
            ("1c instrumentation every step, MLflow server, metrics to its database",
             direct, 1.05))
        for label, (ratio, run_s, base_s), goal in references:
            rows.append({"row": label, "baseline": "plain PyTorch loop (fused Adam)",
                         "ratio": ratio, "layerwise_s": run_s, "baseline_s": base_s,
                         "target": f"<= {goal:.2f}x" if goal else "reference",
                         "met": ratio <= goal if goal else None})
        ratio, run_s, base_s = median_ratio(
            lambda: layerwise_training(epochs, tracking_uri=None, home=tmp, diagnostics=False),
            plain, repeats)
        steps = plain()["steps"]
        device = bench_device()
        peak = matmul_peak_gflops(1, device)
        achieved = steps * mlp_step_gflop() / run_s
        rows.append({"row": "5 compute efficiency, diagnostics off",
                     "baseline": "plain PyTorch loop (fused Adam)", "ratio": 1 / ratio,
                     "layerwise_s": run_s, "baseline_s": base_s,
                     "target": ">= 0.97x samples/s", "met": 1 / ratio >= 0.97,
                     "note": f"{achieved:.1f} GFLOP/s = {achieved / peak:.0%} of a 1-thread "
                             f"matmul peak of {peak:.0f} GFLOP/s on {device.type}"})
    return rows
