"""Row 7b: what the live diagnosis adds to the training loop.

The measured run is what a default spec does: per-layer gradient, update and weight norms at
every step, activation statistics, and the live diagnosis (`workers.diagnostics.live`: the
diagnosis judged again at every epoch end, with a fresh activation sample). The baseline is
the same run with the live diagnosis alone switched off (`RunOptions.live_diagnosis=False`):
the same norms, the same samples every `diagnostics.activation_every_steps` steps, the same
diagnosis after training. Both go through `run_experiment` (MLflow on SQLite); the time is the
training loop's, from its `on_train_start` to its `on_train_end`. Baseline and measured runs
alternate (in both orders), and the ratio is that of their medians.

`python -m bench.diagnosis_cost [--epochs N] [--repeats N]` runs this row alone.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.workloads import mlp_digits_spec
from tests.utils.settings import local_settings, worker_settings
from workers.diagnostics.live import LiveDiagnosis
from workers.run import RunHooks, RunOptions, run_experiment
from workers.training.callback_base import TrainerView

TARGET = 1.02


class LoopTimer(RunHooks):
    """The training loop's wall time and the training thread's CPU time, from the
    callbacks' start to their end."""

    def __init__(self) -> None:
        self.started = self.seconds = self.cpu_started = self.cpu_seconds = 0.0
        self.live: LiveDiagnosis | None = None

    def on_train_start(self, trainer: TrainerView) -> None:
        self.live = next((c for c in trainer.callbacks if isinstance(c, LiveDiagnosis)), None)
        self.started, self.cpu_started = time.perf_counter(), time.thread_time()

    def on_train_end(self, trainer: TrainerView) -> None:
        self.seconds = time.perf_counter() - self.started
        self.cpu_seconds = time.thread_time() - self.cpu_started


def workload(epochs: int) -> dict[str, Any]:
    """The bench's MLP on digits with the diagnostics of a default spec (plots off: they are
    drawn after training)."""
    return mlp_digits_spec(epochs, diagnostics={"plots": False})


def timed_run(spec: dict[str, Any], settings: Any, *, live: bool) -> dict[str, Any]:
    timer = LoopTimer()
    reports: list[dict[str, Any]] = []
    result = run_experiment("bench-live", spec, settings, reports.append,
                            RunOptions(hooks=timer, live_diagnosis=live))
    live_s = timer.live.spent if timer.live is not None else 0.0
    return {"seconds": timer.seconds, "cpu_seconds": timer.cpu_seconds, "steps": result["steps"],
            "live_share": live_s / timer.seconds if timer.seconds else 0.0,
            "judged": len(timer.live.seen) if timer.live is not None else 0,
            "detected_at_step": (result.get("diagnosis") or {}).get("detected_at_step"),
            "live_reported": any("diagnosis" in r.get("progress", {}) for r in reports)}


def measure(epochs: int, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="layerwise-live-cost-") as tmp:
        settings = worker_settings(local_settings(Path(tmp)))
        spec = workload(epochs)
        if repeats > 1:  # warm: the data cache, MLflow's schema, torch's first calls
            timed_run(spec, settings, live=True)
        runs: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
        for i in range(repeats):
            for live in ((False, True) if i % 2 == 0 else (True, False)):
                runs[live].append(timed_run(spec, settings, live=live))
        if any(r["live_reported"] for r in runs[False]) or \
                not all(r["live_reported"] for r in runs[True]):
            raise RuntimeError("the live diagnosis was not switched as asked")

        def median(live: bool, key: str) -> float:
            return statistics.median(r[key] for r in runs[live])

        return {"ratio": median(True, "seconds") / median(False, "seconds"),
                "cpu_ratio": median(True, "cpu_seconds") / median(False, "cpu_seconds"),
                "live_s": median(True, "seconds"), "baseline_s": median(False, "seconds"),
                "live_runs": [r["seconds"] for r in runs[True]],
                "baseline_runs": [r["seconds"] for r in runs[False]],
                "live_share": median(True, "live_share"),
                "judged": int(median(True, "judged")),
                "epochs": epochs, "steps": runs[True][0]["steps"]}


def run(tiny: bool = False, *, epochs: int | None = None, repeats: int | None = None
        ) -> list[dict[str, Any]]:
    measured = measure(epochs or (3 if tiny else 40), repeats or (1 if tiny else 7))
    ratio = measured["ratio"]
    return [{"row": "7b live diagnosis cost",
             "baseline": "the same loop with per-layer norms, live diagnosis off",
             "ratio": ratio, "layerwise_s": measured["live_s"],
             "baseline_s": measured["baseline_s"], "cpu_ratio": measured["cpu_ratio"],
             "target": f"<= {TARGET:.2f}x", "met": ratio <= TARGET,
             "live_share": measured["live_share"],
             "note": f"{measured['epochs']} epochs, {measured['steps']} steps, medians of "
                     f"{len(measured['live_runs'])} interleaved repeats; judged "
                     f"{measured['judged']} epochs, in {measured['live_share']:.1%} of the "
                     "loop's time",
             "runs": {"live": measured["live_runs"], "baseline": measured["baseline_runs"]}}]


def main() -> None:
    parser = argparse.ArgumentParser(description="bench row 7b alone: "
                                                 + __doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    measured = measure(args.epochs, args.repeats)
    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in measured.items()
           if not k.endswith("_runs")})
    print("live:", [round(s, 3) for s in measured["live_runs"]])
    print("base:", [round(s, 3) for s in measured["baseline_runs"]])


if __name__ == "__main__":
    main()
