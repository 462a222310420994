"""The sweep's MLflow parent run: the space and search settings as params, and at the end the
best trial, the trials per status, the per-configuration statistics over seeds, which swept
values mattered, the trial table and the summary plots.

Every trial's status comes from services.contract.trial_status: what the parent run's metrics,
`trials.json`, `summary.json` and the plots say of a trial is the same.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from typing import Any

import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from services.contract import mlflow_names as names
from services.contract.sweep_spec import SweepSpec, configuration_key
from services.contract.trial_status import (
    STOPPED_STATUSES,
    counts_final_metric,
    label_counts,
    status_counts,
    trial_status,
)
from services.sweep_table import best_trial, diagnosis_stops
from workers.diagnostics.expectation_checks import evaluate_sweep
from workers.sweeps import sweep_plots
from workers.sweeps.importance import param_importance
from workers.sweeps.metric_bounds import Bounds, clip_interval, metric_bounds
from workers.sweeps.parallel_coordinates import parallel_coordinates
from workers.sweeps.trial import TAG_TRIAL_ID
from workers.sweeps.verdict_grid import verdict_grid
from workers.tracking.experiments import ensure_experiment
from workers.tracking.metric_writers import ClientWriter
from workers.tracking.run_tracker import MAX_PARAM_LENGTH, find_run, layerwise_version
from workers.worker_settings import WorkerSettings

TAG_KIND = "layerwise.kind"
TAG_BEST_TRIAL = "layerwise.best_trial_id"
TAG_BEST_RUN = "layerwise.best_run_id"
TOP_TRIALS_PLOTTED = 3
PLOTTED = ("succeeded", "stopped", "early_stopped")  # the statuses whose metric is drawn
SUMMARY_SECONDS = "summary_seconds"  # the parent run's: how long finish() took


class ParentRun:
    def __init__(self, client: MlflowClient, run_id: str, experiment_id: str, sweep: SweepSpec,
                 sweep_id: str):
        self.client, self.run_id, self.experiment_id = client, run_id, experiment_id
        self.sweep, self.sweep_id = sweep, sweep_id

    @classmethod
    def open(cls, sweep: SweepSpec, sweep_id: str, settings: WorkerSettings, *,
             run_id: str | None = None) -> ParentRun:
        """Continue `run_id` (a sweep resumed after a restart), else the sweep's parent run if
        MLflow holds one (a driver that died before the job store learned its id), else create
        it: one sweep, one parent run."""
        client = MlflowClient(tracking_uri=settings.tracking_uri)
        if run_id is None:
            experiment_id = ensure_experiment(client, sweep.mlflow_project,
                                                    tracking_uri=settings.tracking_uri,
                                                    home=settings.home)
            run_id = find_run(client, experiment_id, {names.TAG_SWEEP_ID: sweep_id,
                                                      TAG_KIND: "sweep"})
        if run_id is not None:
            client.update_run(run_id, status="RUNNING")
            run = client.get_run(run_id)
            parent = cls(client, run_id, run.info.experiment_id, sweep, sweep_id)
            if not run.data.params:  # the driver died before it logged them
                parent._log_settings()
            return parent
        tags = {names.TAG_JOB_ID: sweep_id, names.TAG_SWEEP_ID: sweep_id, TAG_KIND: "sweep",
                names.TAG_VERSION: layerwise_version(), **sweep.tags}
        run = client.create_run(experiment_id, tags=tags, run_name=sweep.display_name)
        parent = cls(client, run.info.run_id, experiment_id, sweep, sweep_id)
        parent._log_settings()
        return parent

    def _log_settings(self) -> None:
        params: dict[str, Any] = {f"space.{path}": json.dumps(domain.model_dump(mode="json"))
                                  for path, domain in self.sweep.space.items()}
        params.update({f"search.{k}": v for k, v in self.sweep.search.model_dump().items()})
        params.update({f"scheduler.{k}": v
                       for k, v in self.sweep.scheduler.model_dump().items()})
        params.update(repeat=self.sweep.repeat, trials=self.sweep.trial_count())
        entries = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in params.items()]
        ClientWriter(self.client).write_params(self.run_id, entries)
        self.client.log_text(self.run_id, yaml.safe_dump(self.sweep.model_dump(mode="json"),
                                                         sort_keys=False), "sweep.yaml")

    def children(self, status: str | None = None) -> list[Any]:
        query = f"tags.`{names.PARENT_RUN_TAG}` = '{self.run_id}'"
        if status is not None:
            query += f" and attributes.status = '{status}'"
        return self.client.search_runs([self.experiment_id], filter_string=query,
                                       max_results=5000)

    def close_open_children(self, status: str) -> None:
        """End child runs whose trial is no longer running (stopped, cut off, cancelled)."""
        for run in self.children("RUNNING"):
            self.client.set_terminated(run.info.run_id, status=status)

    def _kill_cancelled_failures(self, rows: list[dict[str, Any]]) -> None:
        """A trial the cancellation stopped is KILLED, whatever its training raised as it was
        interrupted (the interrupt can surface inside a library as another error)."""
        cancelled = {r.get("trial_id") for r in rows if r.get("status") == "cancelled"}
        for run in self.children("FAILED"):
            if run.data.tags.get(TAG_TRIAL_ID) in cancelled:
                self.client.set_terminated(run.info.run_id, status="KILLED")

    # -- the end -----------------------------------------------------------------------------
    def finish(self, rows: list[dict[str, Any]], *, cancelled: bool) -> dict[str, Any]:
        """Record the outcome on the parent run and close it. Returns {trials, best, statuses,
        configurations, expectations, importance, stopped_on_diagnosis, cpu_seconds_saved}:
        the trials per status label, each of the sweep's `expect` with what was observed,
        which swept values mattered, the trials `search.stop_on` stopped per verdict, and the
        CPU-seconds those stops saved."""
        started = time.perf_counter()
        mode, metric = self.sweep.search.mode, self.sweep.search.metric
        self.close_open_children("KILLED" if cancelled else "FINISHED")
        rows = [{**row, "status": trial_status(row).value} for row in rows]
        if cancelled:
            self._kill_cancelled_failures(rows)
        best = best_trial(rows, mode)
        bounds = metric_bounds(metric, model_kind=self.sweep.base.model.kind)
        configurations = configuration_stats(rows, mode, bounds)
        expectations = evaluate_sweep(self.sweep.expect, rows, search_metric=metric,
                                      search_mode=mode)
        importance = param_importance(rows, self.sweep)
        values = {f"trials/{status}": float(n) for status, n in status_counts(rows).items()}
        stops = diagnosis_stops(rows)
        values.update({f"stopped/{verdict}": float(n)
                       for verdict, n in stops["stopped_on_diagnosis"].items()})
        if self.sweep.search.stop_on:
            values["stopped/cpu_seconds_saved"] = stops["cpu_seconds_saved"]
        values.update({f"importance/{path}": value
                       for path, value in importance.get("params", {}).items()})
        if best is not None:
            values[f"best/{metric}"] = best["metric"]
            self.client.log_batch(self.run_id, tags=[
                RunTag(TAG_BEST_TRIAL, best["trial_id"]),
                RunTag(TAG_BEST_RUN, best.get("mlflow_run_id") or "")])
        stamp = _now_ms()
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, stamp, 0)
                                                    for k, v in values.items()])
        self.client.log_text(self.run_id, json.dumps(rows, indent=2, default=str),
                             "trials.json")
        statuses = label_counts(rows)
        self.client.log_text(self.run_id, json.dumps(
            {"metric": metric, "mode": mode, "best": best, "trials_total": self.sweep.trial_count(),
             "statuses": statuses, "configurations": configurations,
             "expectations": expectations, "importance": importance, **stops},
            indent=2, default=str), "summary.json")
        self._log_plots(rows, configurations, bounds)
        # What the end of a sweep costs, on its own run (BENCHMARKS.md row 10: 1,000 trials).
        self.client.log_metric(self.run_id, SUMMARY_SECONDS, time.perf_counter() - started,
                               _now_ms(), 0)
        failed_all = bool(rows) and all(r.get("status") == "failed" for r in rows)
        status = "KILLED" if cancelled else ("FAILED" if failed_all else "FINISHED")
        self.client.set_terminated(self.run_id, status=status)
        return {"trials": rows, "best": best, "statuses": statuses,
                "configurations": configurations, "expectations": expectations,
                "importance": importance, **stops}

    def _log_plots(self, rows: list[dict[str, Any]], configurations: list[dict[str, Any]],
                   bounds: Bounds) -> None:
        metric, mode = self.sweep.search.metric, self.sweep.search.mode
        figures: dict[str, Any] = {}
        grid = verdict_grid(rows, self.sweep)  # failed trials too: where the space breaks
        if grid is not None:
            figures["plots/verdict_grid.png"] = grid
        scored = [r for r in rows if r.get("metric") is not None
                  and trial_status(r) in PLOTTED]
        if scored:
            figures["plots/metric_vs_params.png"] = sweep_plots.metric_vs_params(
                scored, self.sweep, metric)
        lines = parallel_coordinates(rows, self.sweep)
        if lines is not None:
            figures["plots/parallel_coordinates.png"] = lines
        if self.sweep.repeat > 1 and any(c["mean"] is not None for c in configurations):
            figures["plots/configurations.png"] = sweep_plots.configuration_intervals(
                configurations, metric, bounds)
        # The best trials' curves: of those that trained to the end, else of any scored.
        top = sorted(scored, key=lambda r: (trial_status(r) != "succeeded",
                                            -r["metric"] if mode == "max" else r["metric"]))
        curves = {r["trial_id"]: self._grad_norm_curves(r["mlflow_run_id"])
                  for r in top[:TOP_TRIALS_PLOTTED] if r.get("mlflow_run_id")}
        if any(curves.values()):
            figures["plots/top_trials_grad_norms.png"] = sweep_plots.grad_norm_curves(
                curves, {r["trial_id"]: r["metric"] for r in top}, metric)
        for artifact, figure in figures.items():
            self.client.log_figure(self.run_id, figure, artifact)
            sweep_plots.close(figure)

    def _grad_norm_curves(self, run_id: str) -> dict[str, list[tuple[int, float]]]:
        keys = [k for k in self.client.get_run(run_id).data.metrics
                if k.startswith("grad_norm/") and k != "grad_norm/total"]
        return {k.removeprefix("grad_norm/"): sorted(
            (m.step, m.value) for m in self.client.get_metric_history(run_id, k))
            for k in keys}


def configuration_stats(rows: list[dict[str, Any]], mode: str,
                        bounds: Bounds = (None, None)) -> list[dict[str, Any]]:
    """Per configuration (the trials that differ only by seed): n, mean, standard deviation
    and the 95% interval of the mean (Student's t, cut to the metric's range `bounds`), best
    mean first; a configuration none of whose trials has a final metric comes last, n 0.

    The trials whose final metric counts make the mean: those that trained to the end and
    those stopped on their diagnosis (their last value, as `expect:` takes it). A trial the
    scheduler stopped was judged on fewer epochs and is left out. `statuses` counts every
    trial of the configuration per status label, `stopped` those stopped either way.
    """
    trials: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        trials[configuration_key(row.get("params", {}))].append(row)
    out = []
    for members in trials.values():
        counted = [r for r in members if counts_final_metric(r) and r.get("metric") is not None
                   and math.isfinite(float(r["metric"]))]
        values = [float(r["metric"]) for r in counted]
        n = len(values)
        mean = sum(values) / n if n else None
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) \
            if mean is not None and n > 1 else None
        half = _t_975(n - 1) * std / math.sqrt(n) if std is not None else None
        out.append({"params": members[0].get("params", {}), "n": n, "mean": mean, "std": std,
                    "ci95": clip_interval((mean - half, mean + half), bounds)
                    if mean is not None and half is not None else None,
                    "values": values, "trial_ids": [r["trial_id"] for r in counted],
                    "stopped": sum(trial_status(r) in STOPPED_STATUSES for r in members),
                    "statuses": label_counts(members)})
    sign = -1.0 if mode == "max" else 1.0
    return sorted(out, key=lambda c: (c["mean"] is None, sign * (c["mean"] or 0.0)))


def _t_975(dof: int) -> float:
    """The 97.5% quantile of Student's t with `dof` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.975, dof)) if dof > 0 else math.nan


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
