"""A sweep's books agree: after a real sweep through the service where `search.stop_on` stops the
broken trials, the sweep record, `trials.json`, `summary.json`, the parent run's metrics and
plots and `layerwise sweep-status` all say the same of every trial (`succeeded` or `stopped:
<verdict>`), count them the same, and say which swept value mattered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.utils.specs import mlp_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 3


def _sweep() -> dict:
    # Sigmoid units from all-zero weights stay identical: the live diagnosis calls them
    # symmetric after the first epoch and stop_on ends them; from Glorot's init they train.
    base = mlp_spec(name="books", data={"name": "xor", "params": {"n": 200}},
                    model={"hidden": [8, 8], "activation": "sigmoid"},
                    optimizer={"name": "sgd", "lr": 0.5},
                    training={"epochs": EPOCHS, "batch_size": 32},
                    diagnostics={"every_steps": 2, "plots": False,
                                 "thresholds": {"live_patience": 1}})
    return {"name": "books", "base": base,
            "space": {"model.init": {"type": "grid", "values": ["zeros", "glorot_normal"]},
                      "optimizer.lr": {"type": "grid", "values": [0.3, 0.6]}},
            "search": {"algorithm": "grid", "metric": "val/accuracy", "mode": "max",
                       "stop_on": ["symmetric"], "stop_grace_epochs": 1},
            "repeat": 2,
            "expect": [{"metric": "val/accuracy", "<=": 1.0,
                        "where": {"model.init": "zeros"}}]}


def _artifact(mlflow: MlflowClient, run_id: str, path: str) -> object:
    return json.loads(Path(mlflow.download_artifacts(run_id, path)).read_text())


def test_every_book_of_a_sweep_with_stopped_trials_says_the_same(server):
    client = server.client()
    record = client.wait_sweep(client.submit_sweep(_sweep()).id, timeout=300, poll_s=0.3)
    assert record.status == "succeeded", record.error

    # The record: the broken trials are stopped on their verdict, the others succeeded.
    by_init: dict[str, list] = {}
    for trial in record.trials:
        by_init.setdefault(trial.params["model.init"], []).append(trial)
    broken, healthy = by_init["zeros"], by_init["glorot_normal"]
    assert len(broken) == len(healthy) == 4
    assert {(t.status, t.stop_reason) for t in broken} == {("stopped", "diagnosis: symmetric")}
    assert all(t.epoch < EPOCHS for t in broken)
    assert {t.status for t in healthy} == {"succeeded"} and all(
        t.epoch == EPOCHS and not t.stop_reason for t in healthy)
    assert (record.trials_done, record.trials_total) == (8, 8)
    assert (record.trials_stopped, record.trials_failed) == (4, 0)
    assert record.trial_statuses == {"succeeded": 4, "stopped: symmetric": 4}
    assert record.stopped_on_diagnosis == {"symmetric": 4}
    assert record.best.trial_id in {t.trial_id for t in healthy}  # never a stopped one

    mlflow = MlflowClient(tracking_uri=server.settings.tracking_uri)
    parent = record.mlflow_run_id
    # trials.json: the same status for every trial.
    listed = _artifact(mlflow, parent, "trials.json")
    assert {r["trial_id"]: r["status"] for r in listed} == {
        t.trial_id: t.status for t in record.trials}

    # summary.json: the same counts, overall and per configuration.
    summary = _artifact(mlflow, parent, "summary.json")
    assert summary["statuses"] == record.trial_statuses
    assert summary["trials_total"] == 8 and summary["best"]["trial_id"] == record.best.trial_id
    assert summary["stopped_on_diagnosis"] == {"symmetric": 4}
    configurations = summary["configurations"]
    assert configurations == record.configurations and len(configurations) == 4
    for config in configurations:
        zeros = config["params"]["model.init"] == "zeros"
        assert config["statuses"] == ({"stopped: symmetric": 2} if zeros else {"succeeded": 2})
        assert config["stopped"] == (2 if zeros else 0)
        assert config["n"] == 2  # a stopped trial's last metric counts in its mean
        low, high = config["ci95"]
        assert 0.0 <= low <= config["mean"] <= high <= 1.0  # cut to an accuracy's range
    # expect: counts the stopped trials too (their mean is what it observed).
    zeros_mean = sum(t.metric for t in broken) / len(broken)
    assert record.expectations[0]["observed"] == pytest.approx(zeros_mean)
    assert summary["expectations"] == record.expectations

    # What mattered: the init decides whether a trial trains; the importance says so.
    importance = summary["importance"]
    assert importance == record.importance
    assert importance["evaluator"] == "fanova" and importance["trials"] == 8
    assert list(importance["params"]) == ["model.init", "optimizer.lr"]
    assert sum(importance["params"].values()) == pytest.approx(1.0, abs=1e-3)

    # The parent run's metrics and plots.
    run = mlflow.get_run(parent)
    assert run.data.metrics["trials/succeeded"] == 4.0
    assert run.data.metrics["trials/stopped"] == 4.0
    assert run.data.metrics["trials/early_stopped"] == 0.0
    assert run.data.metrics["stopped/symmetric"] == 4.0
    assert run.data.metrics["importance/model.init"] == importance["params"]["model.init"]
    plots = {a.path for a in mlflow.list_artifacts(parent, "plots")}
    assert {"plots/verdict_grid.png", "plots/metric_vs_params.png",
            "plots/parallel_coordinates.png", "plots/configurations.png"} <= plots
    for trial in broken:
        child = mlflow.get_run(trial.mlflow_run_id)
        assert child.data.tags["layerwise.trial_status"] == "stopped_on_diagnosis"

    # sweep-status: the same counts, statuses and importance.
    shown = subprocess.run(
        [sys.executable, "-m", "api.cli", "sweep-status", record.id, "--url", server.url],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "COLUMNS": "220"})
    assert shown.returncode == 0, shown.stdout + shown.stderr
    out = shown.stdout
    assert "trials 8/8, 4 stopped" in out
    assert out.count("stopped: symmetric") >= 4 and "failed" not in out
    assert "trials: succeeded 4, stopped: symmetric 4" in out
    assert "what mattered for val/accuracy (fanova importance over 8 trials): model.init" in out
