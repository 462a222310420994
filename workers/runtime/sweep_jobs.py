"""What the dispatcher does for sweep jobs beyond what it does for experiments: reserve their
trials' resources, fold the trial reports into the job's result, decide the outcome, and close
the MLflow runs a driver that died could not."""

from __future__ import annotations

import math
from typing import Any

from mlflow.tracking import MlflowClient

from services.contract import mlflow_names
from services.lifecycle import Status
from services.records import JobRecord
from services.resources import run_ask, times_fit
from services.store import JobStore
from services.sweep_table import best_trial, cancel_live_trials, merge_trials


def requested(record: JobRecord) -> tuple[float, float]:
    """CPUs and GPUs of one run (all its workers): the experiment, or one trial of a sweep."""
    spec = record.spec.get("base", {}) if record.job_type == "sweep" else record.spec
    run = run_ask(spec.get("resources", {}))
    return run["cpus"], run["gpus"]


def reserved(record: JobRecord, capacity: dict[str, float]) -> tuple[float, float]:
    """What a job holds while it runs: an experiment its own resources, a sweep one trial's
    times the trials it may run at once (`search.max_concurrent`, else as many as fit)."""
    cpus, gpus = requested(record)
    if record.job_type != "sweep":
        return cpus, gpus
    fit = min(times_fit(cpus, capacity["cpus"]), times_fit(gpus, capacity["gpus"]))
    limit = record.spec.get("search", {}).get("max_concurrent") or math.inf
    total = (record.result or {}).get("trials_total") or math.inf
    concurrent = max(1, min(fit, limit, total))
    return cpus * concurrent, gpus * concurrent


def merge_reports(store: JobStore, sweep_id: str, rows: dict[str, dict[str, Any]],
                  **summary: Any) -> JobRecord:
    """Fold trial rows (and, at the end, the driver's summary) into the sweep's result, with
    the best trial so far."""
    record = store.get(sweep_id)
    result = {**(record.result or {}), **summary}
    table = merge_trials(result.get("trials", []), rows)
    if record.status == Status.CANCELLED:
        table = cancel_live_trials(table)
    mode = record.spec.get("search", {}).get("mode", "min")
    return store.update(sweep_id, result={**result, "trials": table,
                                          "best": best_trial(table, mode)})


def outcome(record: JobRecord) -> tuple[Status, str | None] | None:
    """The status a sweep whose driver returned ends in, with its error; None when it is no
    longer running (cancelled through the store)."""
    if record.status != Status.RUNNING:
        return None
    table = (record.result or {}).get("trials", [])
    if table and all(row.get("status") == "failed" for row in table):
        first = next((row.get("error") for row in table if row.get("error")), None)
        return Status.FAILED, f"every trial failed; the first: {first}"
    return Status.SUCCEEDED, None


def close_runs(record: JobRecord, tracking_uri: str, status: str) -> None:
    """Close a sweep's parent run with `status` and its still-open trial runs as KILLED (the
    driver does this itself unless it died)."""
    if not record.mlflow_run_id or not record.mlflow_experiment_id:
        return
    client = MlflowClient(tracking_uri=tracking_uri)
    query = (f"tags.`{mlflow_names.PARENT_RUN_TAG}` = '{record.mlflow_run_id}' "
             "and attributes.status = 'RUNNING'")
    for run in client.search_runs([record.mlflow_experiment_id], filter_string=query,
                                  max_results=5000):
        client.set_terminated(run.info.run_id, status="KILLED")
    client.set_terminated(record.mlflow_run_id, status=status)
