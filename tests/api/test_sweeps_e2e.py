"""Sweeps end to end: the real app over HTTP, its dispatcher, Ray Tune on the local Ray, MLflow
on SQLite. Trials are tiny (xor, a few units, 2-3 epochs)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import ray
import yaml
from mlflow.tracking import MlflowClient

from services.sweep_table import SweepRecord
from tests.utils.specs import mlp_spec
from tests.utils.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def tiny_sweep(**overrides) -> dict:
    base = mlp_spec(name="tiny", data={"name": "xor", "params": {"n": 200}},
                    model={"hidden": [8]}, training={"epochs": 2, "batch_size": 32},
                    diagnostics={"every_steps": 2})
    spec = {"name": "tiny-sweep", "base": base,
            "space": {"model.activation": {"type": "grid", "values": ["relu", "tanh"]},
                      "optimizer.lr": {"type": "loguniform", "low": 1e-3, "high": 1e-1}},
            "search": {"algorithm": "random", "num_samples": 1, "metric": "val/loss",
                       "mode": "min"},
            "repeat": 2}
    spec.update(overrides)
    return spec


def children(mlflow: MlflowClient, record: SweepRecord) -> list:
    return mlflow.search_runs([record.mlflow_experiment_id], filter_string=(
        f"tags.`mlflow.parentRunId` = '{record.mlflow_run_id}'"), max_results=1000)


def test_cli_sweep_runs_every_trial_as_a_child_run_with_a_summary(server, tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(tiny_sweep()))
    done = subprocess.run([sys.executable, "-m", "api.cli", "sweep", str(path), "--wait",
                           "--url", server.url], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded" in done.stdout and "best trial" in done.stdout
    assert "95% interval" in done.stdout and "MLflow parent run" in done.stdout
    sweep_id = done.stdout.split("submitted sweep ")[1].split()[0]

    record = server.client().get_sweep(sweep_id)
    assert record.status == "succeeded" and record.trials_total == 4
    trials = record.trials
    assert len(trials) == 4 and record.trials_done == 4
    assert all(t.status == "succeeded" and t.mlflow_run_id for t in trials)
    assert sorted((t.params["model.activation"], t.repeat) for t in trials) == [
        ("relu", 0), ("relu", 1), ("tanh", 0), ("tanh", 1)]
    assert len({t.params["optimizer.lr"] for t in trials}) == 1  # one draw, shared
    best = min(trials, key=lambda t: t.metric)
    assert record.best.trial_id == best.trial_id
    assert record.best.metric == pytest.approx(best.metric)
    configurations = record.configurations
    assert [c["n"] for c in configurations] == [2, 2]
    assert all(c["ci95"][0] <= c["mean"] <= c["ci95"][1] for c in configurations)

    mlflow = MlflowClient(tracking_uri=server.settings.tracking_uri)
    parent = mlflow.get_run(record.mlflow_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["layerwise.sweep_id"] == sweep_id
    assert parent.data.tags["layerwise.best_trial_id"] == best.trial_id
    assert parent.data.params["search.algorithm"] == "random"
    assert '"loguniform"' in parent.data.params["space.optimizer.lr"]
    assert parent.data.metrics["best/val/loss"] == pytest.approx(best.metric)
    artifacts = {a.path for a in mlflow.list_artifacts(parent.info.run_id, "plots")}
    assert artifacts == {"plots/metric_vs_params.png", "plots/configurations.png",
                         "plots/top_trials_grad_norms.png", "plots/verdict_grid.png",
                         "plots/parallel_coordinates.png"}
    assert all(t.verdict for t in trials)  # the diagnosis's, shown on the verdict grid
    runs = {r.info.run_id: r for r in children(mlflow, record)}
    assert set(runs) == {t.mlflow_run_id for t in trials}
    with_model: dict[str, bool] = {}
    for trial in trials:
        run = runs[trial.mlflow_run_id]
        assert run.info.status == "FINISHED"
        assert run.data.tags["layerwise.sweep_id"] == sweep_id
        assert run.data.tags["layerwise.trial_id"] == trial.trial_id
        assert run.data.params["model.activation"] == trial.params["model.activation"]
        assert run.data.params["training.seed"] == str(trial.repeat)
        assert {"grad_norm/layers.0", "grad_norm/output", "update_norm/layers.0",
                "val/loss"} <= set(run.data.metrics)
        assert run.data.metrics["val/loss"] == pytest.approx(trial.metric)
        files = {a.path for a in mlflow.list_artifacts(run.info.run_id)}
        assert {"spec.yaml", "layers.json"} <= files
        with_model[trial.trial_id] = "model" in files
    # search.log_models: best (the default): the best trial has its model, and a trial without
    # one ended behind a better (or equal) trial
    assert with_model[best.trial_id]
    for trial in trials:
        assert with_model[trial.trial_id] or any(
            other.metric <= trial.metric for other in trials if other is not trial)
    listed = server.http().get("/v1/sweeps").json()
    assert sweep_id in {s["id"] for s in listed["data"]}
    experiments = server.http().get("/v1/experiments", params={"limit": 500}).json()
    assert sweep_id not in {e["id"] for e in experiments["data"]}


def test_asha_stops_a_bad_trial_early_and_marks_it(server):
    # One trial at a time: the good learning rate sets the bar at epoch 1, the bad one falls
    # below it there and is stopped.
    spec = tiny_sweep(space={"optimizer.lr": {"type": "grid", "values": [0.05, 1e-6]}},
                      search={"algorithm": "grid", "metric": "val/loss", "mode": "min",
                              "max_concurrent": 1},
                      scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2},
                      repeat=1)
    spec["base"]["training"]["epochs"] = 3
    client = server.client()
    record = client.wait_sweep(client.submit_sweep(spec).id, timeout=240, poll_s=0.3)
    assert record.status == "succeeded", record.error
    by_lr = {t.params["optimizer.lr"]: t for t in record.trials}
    assert by_lr[0.05].status == "succeeded" and by_lr[0.05].epoch == 3
    stopped = by_lr[1e-6]
    assert stopped.status == "early_stopped" and stopped.epoch < 3
    assert record.best.trial_id == by_lr[0.05].trial_id
    mlflow = MlflowClient(tracking_uri=server.settings.tracking_uri)
    run = mlflow.get_run(stopped.mlflow_run_id)
    assert run.data.tags["layerwise.trial_status"] == "early_stopped"
    assert run.info.status == "FINISHED"
    assert len(mlflow.get_metric_history(run.info.run_id, "val/loss")) == stopped.epoch


def test_tpe_with_repeats_and_median_stopping_runs_each_suggestion_with_every_seed(server):
    spec = tiny_sweep(space={"optimizer.lr": {"type": "loguniform", "low": 1e-3, "high": 0.3},
                             "model.hidden": {"type": "choice", "values": [[4], [8, 8]]}},
                      search={"algorithm": "tpe", "num_samples": 2, "metric": "val/loss",
                              "mode": "min", "max_concurrent": 2},
                      scheduler={"name": "median", "grace_period": 1})
    spec["base"]["training"]["epochs"] = 3
    client = server.client()
    record = client.wait_sweep(client.submit_sweep(spec).id, timeout=240, poll_s=0.3)
    assert record.status == "succeeded", record.error
    trials = record.trials
    assert len(trials) == record.trials_total == 4
    # Median stopping needs 3 other trials at an epoch (min_samples_required) to stop one.
    assert {t.status for t in trials} <= {"succeeded", "early_stopped"}
    assert sum(t.status == "succeeded" for t in trials) >= 2
    groups: dict[str, list[int]] = {}
    for trial in trials:  # TPE suggests twice; each suggestion runs with seeds +0 and +1
        groups.setdefault(repr(sorted(trial.params.items())), []).append(trial.repeat)
    assert sorted(sorted(seeds) for seeds in groups.values()) == [[0, 1], [0, 1]]
    assert sum(c["n"] for c in record.configurations) == sum(
        t.status == "succeeded" for t in trials)


def test_trials_train_on_worker_processes_that_earlier_trials_warmed(server):
    """A FIFO sweep's trials run as tasks on Ray's pooled workers, not in the new processes
    Tune starts for each sweep: the second sweep starts no process to train in."""
    spec = tiny_sweep(space={"optimizer.lr": {"type": "grid", "values": [0.01, 0.02]}},
                      search={"algorithm": "grid", "max_concurrent": 2}, repeat=1)
    client = server.client()
    assert client.wait_sweep(client.submit_sweep(spec).id).status == "succeeded"
    started = time.time()
    second = client.wait_sweep(client.submit_sweep(spec).id)
    assert second.status == "succeeded"
    runs = children(MlflowClient(tracking_uri=server.settings.tracking_uri), second)
    assert len(runs) == 2
    for run in runs:
        pid = int(run.data.tags["layerwise.worker"].rsplit(":", 1)[1])
        assert psutil.Process(pid).create_time() < started, "a trial trained in a new process"


def test_cancel_stops_every_trial_and_frees_the_cluster(server):
    spec = tiny_sweep(space={"optimizer.lr": {"type": "grid", "values": [0.01, 0.02, 0.03]}},
                      search={"algorithm": "grid"}, repeat=1)
    spec["base"]["training"]["epochs"] = 10_000
    client = server.client()
    sweep = client.submit_sweep(spec)

    def two_running() -> bool:
        return sum(t.status == "running" and t.epoch >= 1
                   for t in client.get_sweep(sweep.id).trials) == 2

    wait_until(two_running, 180, lambda: f"two trials to run together: "
                                         f"{client.get_sweep(sweep.id)}", every=0.2)
    cancelled = client.cancel_sweep(sweep.id)
    assert cancelled.status == "cancelled"
    assert server.http().post(f"/v1/sweeps/{sweep.id}/cancel").status_code == 409

    wait_until(lambda: sweep.id not in server.dispatcher.in_flight, 60,
               "the sweep's driver to stop", every=0.2)
    wait_until(lambda: ray.available_resources().get("CPU", 0) >= 2, 60,
               "the trials to free their CPUs", every=0.2)
    assert ray.available_resources().get("CPU", 0) == 2
    record = client.get_sweep(sweep.id)
    assert record.status == "cancelled"
    assert {t.status for t in record.trials} == {"cancelled"}
    mlflow = MlflowClient(tracking_uri=server.settings.tracking_uri)
    assert mlflow.get_run(record.mlflow_run_id).info.status == "KILLED"
    statuses = [r.info.status for r in children(mlflow, record)]
    assert len(statuses) >= 2 and set(statuses) == {"KILLED"}


def test_refused_sweeps_get_a_422_naming_the_field_and_nothing_is_queued(server):
    http = server.http()
    before = http.get("/v1/sweeps", params={"limit": 500}).json()["count"]
    cases = [
        (tiny_sweep(space={"optimizer.lrr": {"type": "uniform", "low": 0.1, "high": 0.2}}),
         ["space", "optimizer.lrr"], "no field 'lrr'"),
        (tiny_sweep(space={"optimizer.lr": {"type": "loguniform", "low": 0, "high": 0.1}}),
         ["space", "optimizer.lr"], "low > 0"),
        (tiny_sweep(space={"model.hidden": {"type": "grid", "values": [[4], [0]]}}),
         ["space", "model.hidden"], "values[1]"),
        (tiny_sweep(search={"metric": "val/f1"}), ["search", "metric"], "val/accuracy"),
        (tiny_sweep(base=mlp_spec(resources={"cpus": 64})), ["base", "resources", "cpus"],
         "cluster"),
        (tiny_sweep(base=mlp_spec(optimizer={"lr": -1})), ["base", "optimizer", "lr"], ""),
    ]
    for body, loc, words in cases:
        response = http.post("/v1/sweeps", json=body)
        assert response.status_code == 422, (loc, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        errors = response.json()["errors"]
        matching = [e for e in errors if e["loc"][:len(loc)] == loc]
        assert matching and words in matching[0]["msg"], (loc, errors)
    assert http.get("/v1/sweeps", params={"limit": 500}).json()["count"] == before
    assert http.get("/v1/sweeps/nope").status_code == 404
