"""`search.stop_on`: a sweep stops a trial as soon as its live diagnosis names one of the listed
verdicts (after the grace epochs), under FIFO and ASHA alike; the trial's run ends with the
verdict as its stop reason, a healthy trial runs all its epochs, and the parent run counts the
stops per verdict, the CPU-seconds saved, and draws where in the space each verdict lives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import ray
from mlflow.tracking import MlflowClient
from pydantic import ValidationError

from services.contract.sweep_spec import SweepSpec
from tests.utils.specs import mlp_spec
from tests.workers.test_sweep_driver import Driver

EPOCHS = 6


def _base(**diagnostics) -> dict:
    # Sigmoid units from all-zero weights stay identical (symmetric) from the first step;
    # the same net from Glorot's init learns digits within a few epochs.
    return mlp_spec(name="stop-on", model={"hidden": [16, 16], "activation": "sigmoid"},
                    optimizer={"name": "sgd", "lr": 0.5},
                    training={"epochs": EPOCHS, "batch_size": 64},
                    diagnostics={"every_steps": 5, "plots": False, **diagnostics})


def _sweep(scheduler: dict, **search) -> dict:
    return {"name": "stop-on", "base": _base(),
            "space": {"model.init": {"type": "grid", "values": ["zeros", "glorot_normal"]}},
            "search": {"algorithm": "grid", "metric": "val/accuracy", "mode": "max",
                       "stop_on": ["symmetric", "vanishing"], "stop_grace_epochs": 2,
                       **search},
            "scheduler": scheduler}


# -- the field ---------------------------------------------------------------------------------
def _refusal(search: dict, base: dict | None = None) -> str:
    spec = {"base": base or _base(), "space": {"optimizer.lr": {"type": "choice",
                                                                "values": [0.1]}},
            "search": search}
    with pytest.raises(ValidationError) as caught:
        SweepSpec.model_validate(spec)
    return str(caught.value)


def test_stop_on_takes_known_problem_verdicts_only_and_says_how_to_fix_it():
    spec = SweepSpec.model_validate(_sweep({"name": "fifo"},
                                           stop_on=["vanishing", "symmetric", "vanishing"]))
    assert spec.search.stop_on == ["vanishing", "symmetric"]

    healthy = _refusal({"stop_on": ["vanishing", "healthy"]})
    assert "search.stop_on" in healthy and "drop healthy" in healthy

    unknown = _refusal({"stop_on": ["vanish"]})
    assert "search.stop_on" in unknown and "'vanish'" in unknown and "vanishing" in unknown

    grace = _refusal({"stop_on": ["vanishing"], "stop_grace_epochs": EPOCHS})
    assert "search.stop_grace_epochs" in grace and "lower it below" in grace

    blind = _refusal({"stop_on": ["vanishing"]}, base=_base(
        grad_norms=False, update_norms=False, weight_norms=False, activation_stats=False))
    assert "search.stop_on" in blind and "base.diagnostics.grad_norms" in blind


# -- sweeps ------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("scheduler", [
    {"name": "fifo"},
    # ASHA's only rung after the grace epochs: what stops the broken trial is its diagnosis.
    {"name": "asha", "grace_period": EPOCHS - 1, "max_t": EPOCHS}],
    ids=["fifo", "asha"])
def test_a_broken_trial_stops_on_its_verdict_while_a_healthy_one_runs_every_epoch(
        ray_cluster, settings, scheduler):
    driver = Driver(settings)
    sweep_id = f"stop-on-{scheduler['name']}"

    summary = ray.get(driver.launch(sweep_id, _sweep(scheduler)), timeout=300)

    rows = {r["params"]["model.init"]: r for r in summary["trials"]}
    broken, healthy = rows["zeros"], rows["glorot_normal"]
    assert broken["status"] == "stopped", broken  # it ended as its diagnosis asked
    assert broken["stop_reason"] == "diagnosis: symmetric" and broken["verdict"] == "symmetric"
    assert 2 <= broken["epoch"] < EPOCHS, broken
    assert broken["cpu_seconds_saved"] > 0
    assert healthy["epoch"] == EPOCHS and not healthy.get("stop_reason"), healthy
    assert healthy["metric"] > broken["metric"]
    assert summary["best"]["trial_id"] == healthy["trial_id"]
    assert summary["stopped_on_diagnosis"] == {"symmetric": 1}
    assert summary["cpu_seconds_saved"] == pytest.approx(broken["cpu_seconds_saved"])

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    stopped_run = client.get_run(broken["mlflow_run_id"])
    assert stopped_run.info.status == "FINISHED"
    assert stopped_run.data.tags["layerwise.stop_reason"] == "diagnosis: symmetric"
    assert len(client.get_metric_history(broken["mlflow_run_id"], "val/accuracy")) \
        == broken["epoch"]
    driver.follow(sweep_id)
    parent_id = driver.job["mlflow_run_id"]
    parent = client.get_run(parent_id)
    assert parent.data.metrics["stopped/symmetric"] == 1.0
    assert parent.data.metrics["stopped/cpu_seconds_saved"] > 0
    recorded = json.loads(Path(client.download_artifacts(parent_id, "summary.json"))
                          .read_text())
    assert recorded["stopped_on_diagnosis"] == {"symmetric": 1}
    assert recorded["cpu_seconds_saved"] > 0
    plots = {a.path for a in client.list_artifacts(parent_id, "plots")}
    assert "plots/verdict_grid.png" in plots


# -- what the parent run and the table make of the rows ---------------------------------------
def _row(trial_id: str, activation: str, hidden: list[int], verdict: str, *,
         stopped: bool = False, saved: float = 0.0) -> dict:
    row = {"trial_id": trial_id, "status": "succeeded", "verdict": verdict, "metric": 0.5,
           "params": {"model.activation": activation, "model.hidden": hidden}}
    if stopped:
        row.update(stop_reason=f"diagnosis: {verdict}", cpu_seconds_saved=saved)
    return row


ROWS = [_row("a", "sigmoid", [8] * 6, "vanishing", stopped=True, saved=3.0),
        _row("b", "sigmoid", [8] * 6, "vanishing", stopped=True, saved=2.5),
        _row("c", "relu", [8] * 6, "healthy"),
        _row("d", "relu", [8], "healthy"),
        _row("e", "sigmoid", [8], "symmetric", stopped=True, saved=1.0),
        {**_row("f", "relu", [8], "healthy"), "stop_reason": "early_stopping"}]


def test_the_stops_are_counted_per_verdict_with_the_cpu_seconds_they_saved():
    from services.sweep_table import diagnosis_stops

    assert diagnosis_stops(ROWS) == {"stopped_on_diagnosis": {"symmetric": 1, "vanishing": 2},
                                     "cpu_seconds_saved": 6.5}
    assert diagnosis_stops([]) == {"stopped_on_diagnosis": {}, "cpu_seconds_saved": 0.0}


def test_the_sweep_record_carries_each_trials_verdict_and_the_stops():
    from datetime import UTC, datetime

    from services.records import JobRecord, Progress
    from services.sweep_table import SweepRecord

    job = JobRecord(
        id="s1", job_type="sweep", name="stop-on", project="tests", status="running",
        spec={"search": {"metric": "val/accuracy", "mode": "max"}}, spec_hash="0",
        priority=0, attempts=1, max_attempts=1, owner="", sweep_id=None, param_count=6,
        created_at=datetime.now(UTC), started_at=None, finished_at=None, progress=Progress(),
        error=None, result={"trials": ROWS}, diagnosis=None, mlflow_run_id=None,
        mlflow_experiment_id=None)

    record = SweepRecord.of(job)

    assert record.stopped_on_diagnosis == {"symmetric": 1, "vanishing": 2}
    assert record.cpu_seconds_saved == 6.5
    first = record.trials[0]
    assert (first.verdict, first.stop_reason, first.cpu_seconds_saved) == (
        "vanishing", "diagnosis: vanishing", 3.0)


def test_the_verdict_grid_has_a_cell_per_pair_of_swept_values():
    from workers.sweeps.sweep_plots import close
    from workers.sweeps.verdict_grid import trial_verdict, verdict_grid

    sweep = SweepSpec.model_validate({
        "base": _base(), "space": {
            "model.activation": {"type": "grid", "values": ["sigmoid", "relu"]},
            "model.hidden": {"type": "grid", "values": [[8], [8] * 6]},
            "optimizer.lr": {"type": "loguniform", "low": 1e-3, "high": 1.0}}})
    rows = [{**r, "params": {**r["params"], "optimizer.lr": 10 ** -(i % 3)}}
            for i, r in enumerate(ROWS)]
    rows.append({"trial_id": "g", "status": "failed", "params": rows[0]["params"]})

    assert [trial_verdict(r) for r in rows] == [
        "vanishing", "vanishing", "healthy", "healthy", "symmetric", "healthy", "failed"]
    figure = verdict_grid(rows, sweep)
    assert figure is not None
    panels = figure.axes
    assert len(panels) == 3  # activation x hidden, activation x lr, hidden x lr
    assert [t.get_text() for t in panels[0].get_xticklabels()] == ["sigmoid", "relu"]
    assert [t.get_text() for t in panels[0].get_yticklabels()] == ["1x8", "6x8"]
    cells = sorted(t.get_text() for t in panels[0].texts)
    # each cell's mix of verdicts, most common first, and its stopped trials
    assert "vanishing 2\nfailed 1\n(2 stopped)" in cells and "symmetric 1\n(1 stopped)" in cells
    close(figure)
    assert verdict_grid([{"trial_id": "x", "status": "succeeded", "params": {}}], sweep) is None


def test_the_cli_table_shows_the_stopped_trials_and_what_they_saved():
    from rich.console import Console

    from api.cli.output import sweep_view
    from services.sweep_table import SweepRecord

    record = SweepRecord.model_validate({
        "id": "s1", "name": None, "project": "p", "status": "running", "spec": {},
        "priority": 0, "attempts": 1, "owner": "o", "created_at": "2026-01-01T00:00:00Z",
        "started_at": None, "finished_at": None, "error": None, "mlflow_run_id": None,
        "mlflow_experiment_id": None, "metric": "val/accuracy", "mode": "max",
        "trials_done": 6, "trials_total": 6, "best": None, "trials": ROWS,
        "stopped_on_diagnosis": {"symmetric": 1, "vanishing": 2}, "cpu_seconds_saved": 6.5})
    console = Console(width=200, record=True)
    console.print(sweep_view(record))
    shown = console.export_text()
    assert "stopped: vanishing" in shown and "stopped: symmetric" in shown
    assert "stopped on their diagnosis: symmetric 1, vanishing 2; about 6 CPU-seconds" in shown


class _Trial:
    def __init__(self, name: str):
        self.experiment_tag, self.name = name, name

    def is_finished(self) -> bool:
        return False

    def __repr__(self) -> str:
        return self.name


def test_pbt_counts_a_trial_its_verdict_names_among_the_worst_to_replace_it():
    from ray.tune.schedulers.pbt import _PBTTrialState

    from workers.sweeps.driver import VERDICT_KEY, FinishAwarePBT

    pbt = FinishAwarePBT(time_attr="training_iteration", metric="val/accuracy", mode="max",
                         perturbation_interval=1, quantile_fraction=0.25,
                         hyperparam_mutations={"optimizer.lr": [0.1, 0.01]},
                         stop_on=["vanishing"], stop_grace_epochs=2)
    scores = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6, "e": 0.5, "f": 0.4, "g": 0.3, "h": 0.2}
    trials = {name: _Trial(name) for name in scores}
    for name, score in scores.items():
        state = _PBTTrialState(trials[name])
        state.last_score = score
        verdict = "vanishing" if name in ("a", "c") else "healthy"
        state.last_result = {VERDICT_KEY: verdict, "epoch": 1 if name == "c" else 3}
        pbt._trial_state[trials[name]] = state

    lower, upper = pbt._quantiles()

    # "a" scores best but vanishes: it is replaced, not copied; "c" is still in its grace.
    assert [t.name for t in upper] == ["b"]
    assert {t.name for t in lower} == {"g", "h", "a"}
