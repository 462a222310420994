"""Where the cost of watching goes, and how it falls with the logging interval (row 1e, 1f).

1e, the profile: the bench's MLP (bench/workloads.py) trained through `run_experiment` with a
default spec's diagnostics (norms every step, activation sampling, the live diagnosis,
progress, checkpoints; MLflow on SQLite), every callback hook timed where the loop fires it.
Beside it: the plain loop's step, the worker loop with diagnostics off, the norm kernels alone
(the per-layer norms of one step, timed on a model whose gradients are set: the floor that
any every-step measurement pays on this machine), and the metric thread's CPU time (its share
of the interpreter lock it takes from the training thread).

1f, the curve: row 1a (norms logged to MLflow on SQLite) at every 1, 2, 5, 10 and 50 steps,
each against the plain loop interleaved with it, drawn beside Cockpit's published figures
(its cheapest configuration: 1.5x at every step, 1.2x every 4 steps, 1.0x from every 16).

`python -m bench.watch_cost [--epochs N] [--repeats N]` runs both alone; `python -m bench`
runs them with every row.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from bench.instrumentation import layerwise_training, median_ratio
from bench.workloads import bench_device, mlp_digits_spec, plain_training
from services.contract.spec import ExperimentSpec
from tests.utils.settings import local_settings, worker_settings
from workers.run import (
    RunHooks,
    RunOptions,
    prepare,
    run_experiment,
    seed_everything,
    set_threads,
    to_splits,
)
from workers.training.loop import Trainer
from workers.training.norms import PerLayerNorms

INTERVALS = (1, 2, 5, 10, 50)
# Cockpit (Schneider et al., NeurIPS 2021), its cheapest configuration on its own benchmark.
COCKPIT = ((1, 1.5), (4, 1.2), (16, 1.0))
RESULTS = Path(__file__).parent / "results"


@contextmanager
def timed_hooks() -> Iterator[dict[tuple[str, str], list[float]]]:
    """Every hook a Trainer fires, timed: {(callback class, event): [seconds, calls]}. The
    timer's own cost (two clock reads a call, about 0.1 us) is inside each figure."""
    spent: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    original = Trainer._bind_hooks

    def bind(trainer: Trainer) -> None:
        original(trainer)
        for event, hooks in trainer._hooks.items():
            trainer._hooks[event] = [_timed(hook, spent[(_owner(hook), event)])
                                     for hook in hooks]

    Trainer._bind_hooks = bind  # type: ignore[method-assign,assignment]
    try:
        yield spent
    finally:
        Trainer._bind_hooks = original  # type: ignore[method-assign,assignment]


def _owner(hook: Callable[..., Any]) -> str:
    return type(getattr(hook, "__self__", hook)).__name__


def _timed(hook: Callable[..., Any], into: list[float]) -> Callable[..., Any]:
    clock = time.perf_counter

    def call(*args: Any) -> Any:
        started = clock()
        try:
            return hook(*args)
        finally:
            into[0] += clock() - started
            into[1] += 1

    return call


def thread_cpu_seconds(name: str) -> float:
    """CPU seconds of the live threads called `name` (Linux: their own CPU clocks)."""
    total = 0.0
    for thread in threading.enumerate():
        if thread.name == name and thread.ident is not None:
            try:
                total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
            except (OSError, AttributeError):
                continue
    return total


class Watch(RunHooks):
    """The loop's wall time and the metric thread's CPU time over one run_experiment."""

    def __init__(self) -> None:
        self.started = self.seconds = self.metric_cpu = 0.0
        self._metric_cpu_start = 0.0

    def on_train_start(self, trainer: Any) -> None:
        self._metric_cpu_start = thread_cpu_seconds("mlflow-metrics")
        self.started = time.perf_counter()

    def on_train_end(self, trainer: Any) -> None:
        self.seconds = time.perf_counter() - self.started
        self.metric_cpu = thread_cpu_seconds("mlflow-metrics") - self._metric_cpu_start


def profile(epochs: int) -> dict[str, Any]:
    """One default-diagnostics run, hooks timed, beside the plain loop and the kernels alone."""
    watch = Watch()
    set_threads(1)
    with tempfile.TemporaryDirectory(prefix="layerwise-watch-") as tmp:
        settings = worker_settings(local_settings(Path(tmp)))
        spec = mlp_digits_spec(epochs, diagnostics={"plots": False})
        run_experiment("watch-warm", mlp_digits_spec(2, diagnostics={"plots": False}),
                       settings)  # warm: data cache, MLflow schema, first torch calls
        plain = min((plain_training(epochs) for _ in range(2)), key=lambda r: r["seconds"])
        with timed_hooks() as spent:
            result = run_experiment("watch", spec, settings, lambda update: None,
                                    RunOptions(hooks=watch))
        off = layerwise_training(epochs, tracking_uri=None, home=tmp, diagnostics=False)
    steps = int(result["steps"])
    plain_step = plain["seconds"] / plain["steps"]
    parts = [{"part": f"{owner}.{event}", "calls": int(calls), "seconds": seconds,
              "us_per_step": 1e6 * seconds / steps,
              "share_of_plain": seconds / plain["seconds"]}
             for (owner, event), (seconds, calls) in spent.items()
             if owner != "Watch" and calls]
    parts.sort(key=lambda p: -float(p["seconds"]))  # type: ignore[arg-type]
    kernels = norm_kernels_us()
    return {
        "epochs": epochs, "steps": steps,
        "plain_s": plain["seconds"], "plain_us_per_step": 1e6 * plain_step,
        "loop_s": watch.seconds, "ratio": watch.seconds / plain["seconds"],
        "diagnostics_off_s": off["seconds"], "diagnostics_off_ratio":
            off["seconds"] / plain["seconds"],
        "hooks_s": sum(p["seconds"] for p in parts),
        "metric_thread_cpu_s": watch.metric_cpu,
        "metric_thread_share": watch.metric_cpu / watch.seconds if watch.seconds else 0.0,
        "norm_kernels_us_per_step": kernels,
        "norm_kernels_share_of_plain_step": kernels / (1e6 * plain_step),
        "parts": parts,
    }


def norm_kernels_us(steps: int = 2000) -> float:
    """Microseconds per step of the per-layer norms alone (gradients, the snapshot, updates,
    weights, the stack) on the bench's model with gradients in place: the floor of measuring
    every step on this machine, whatever carries the figures away."""
    spec = ExperimentSpec.model_validate(mlp_digits_spec(1))
    seed_everything(0)
    device = bench_device()
    bundle, objective, model = prepare(spec, [], device)
    split = to_splits(bundle, device)["train"]
    out = model.training_step(split.x[:64], split.y[:64], objective)
    out["loss"].backward()
    norms = PerLayerNorms(model.layer_groups())
    for _ in range(50):
        norms.after_backward()
        norms.before_update()
        norms.after_update()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    rows = []
    for _ in range(steps):
        norms.after_backward()
        norms.before_update()
        rows.append(norms.after_update())
    norms.layer_norms(rows)  # the flush's host copy, counted once per `steps`
    return 1e6 * (time.perf_counter() - started) / steps


def curve(epochs: int, repeats: int) -> list[dict[str, Any]]:
    """Row 1a at each interval of INTERVALS, against the plain loop interleaved with it."""
    set_threads(1)
    points = []
    with tempfile.TemporaryDirectory(prefix="layerwise-curve-") as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        from mlflow.tracking import MlflowClient
        MlflowClient(tracking_uri=uri).search_experiments()  # the schema, once
        for every in INTERVALS:
            ratio, run_s, base_s = median_ratio(
                lambda every=every: layerwise_training(epochs, tracking_uri=uri, home=tmp,
                                                       every_steps=every),
                lambda: plain_training(epochs), repeats)
            points.append({"every_steps": every, "ratio": ratio, "layerwise_s": run_s,
                           "baseline_s": base_s})
    return points


def plot_curve(points: list[dict[str, Any]], kernels_floor: float | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    axes.plot([p["every_steps"] for p in points], [p["ratio"] for p in points], "o-",
              label="Layerwise: per-layer grad, update and weight norms -> MLflow (SQLite)")
    axes.plot([c[0] for c in COCKPIT], [c[1] for c in COCKPIT], "s--", color="grey",
              label="Cockpit, cheapest configuration (published)")
    if kernels_floor is not None:
        axes.axhline(kernels_floor, color="tab:red", linestyle=":",
                     label="the norm kernels alone at every step (this machine)")
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.set_xscale("log")
    axes.set_xticks(list(INTERVALS), [str(i) for i in INTERVALS])
    axes.set_xlabel("norms measured every N optimizer steps")
    axes.set_ylabel("training time / plain PyTorch loop")
    axes.set_title("The cost of watching every layer, by logging interval")
    axes.legend(loc="upper right", fontsize=8)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def rows(epochs: int, repeats: int, results: Path = RESULTS, tiny: bool = False
         ) -> list[dict[str, Any]]:
    found = profile(epochs)
    points = curve(epochs, repeats)
    results.mkdir(parents=True, exist_ok=True)
    name = "watch_cost_tiny" if tiny else "watch_cost"
    (results / f"{name}.json").write_text(json.dumps(
        {"profile": found, "curve": points}, indent=2))
    floor = 1.0 + found["norm_kernels_share_of_plain_step"]
    plot_curve(points, floor, results / f"{name}.png")
    top = ", ".join(f"{p['part']} {p['us_per_step']:.1f} us" for p in found["parts"][:4])
    out = [{"row": "1e profile: the worker loop with a default spec's diagnostics",
            "baseline": "plain PyTorch loop (fused Adam)", "ratio": found["ratio"],
            "layerwise_s": found["loop_s"], "baseline_s": found["plain_s"],
            "target": "reference (the table in BENCHMARKS.md)", "met": None,
            "note": f"plain step {found['plain_us_per_step']:.0f} us; norm kernels alone "
                    f"{found['norm_kernels_us_per_step']:.0f} us a step "
                    f"({found['norm_kernels_share_of_plain_step']:.0%}); diagnostics off "
                    f"{found['diagnostics_off_ratio']:.2f}x; metric thread CPU "
                    f"{found['metric_thread_share']:.0%} of the loop; top hooks: {top}"}]
    for point in points:
        every = point["every_steps"]
        out.append({"row": f"1f curve: norms every {every} step{'s' if every > 1 else ''}, "
                           "MLflow SQLite",
                    "baseline": "plain PyTorch loop (fused Adam)", "ratio": point["ratio"],
                    "layerwise_s": point["layerwise_s"], "baseline_s": point["baseline_s"],
                    "target": "reference (1a holds the targets)", "met": None})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for row in rows(args.epochs, args.repeats):
        print(json.dumps(row))
    found = json.loads((RESULTS / "watch_cost.json").read_text())["profile"]
    for part in found["parts"]:
        print(f"{part['part']:<48} {part['calls']:>8} calls {part['us_per_step']:8.2f} us/step "
              f"{part['share_of_plain']:7.1%} of plain")


if __name__ == "__main__":
    main()
