"""The sweep driver on the local Ray without the service: a sweep whose driver is killed mid-way
resumes from Tune's saved state, and population based training continues trials from
checkpoints inside their own MLflow runs."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import ray
from mlflow.tracking import MlflowClient
from ray.util.placement_group import PlacementGroup, remove_placement_group

from services.contract.sweep_spec import SweepSpec
from services.sweep_table import merge_trials
from services.tracking_store import prepare_tracking_store
from tests.utils.settings import worker_settings
from tests.utils.specs import mlp_spec
from tests.utils.waiting import wait_until
from workers.runtime.progress_board import ProgressBoard
from workers.runtime.ray_tasks import sweep_task
from workers.submission.pipeline import check_sweep
from workers.sweeps.driver import tune_storage

pytestmark = [pytest.mark.slow]


def tiny_base(epochs: int) -> dict:
    return mlp_spec(name="tiny", data={"name": "xor", "params": {"n": 200}},
                    model={"hidden": [8]}, training={"epochs": epochs, "batch_size": 32},
                    diagnostics={"every_steps": 5})


class Driver:
    """Launches sweep drivers as the dispatcher does and follows the board."""

    def __init__(self, settings):
        self.settings = settings
        prepare_tracking_store(settings.tracking_uri)
        self.worker = asdict(worker_settings(settings))
        self.board = ProgressBoard.remote()  # its own, whatever else reports to the service's
        self.rows: list[dict] = []
        self.job: dict = {}

    def launch(self, sweep_id: str, spec: dict, parent_run_id: str | None = None):
        checked = check_sweep(SweepSpec.model_validate(spec), self.settings.data_root_list)
        return sweep_task.remote(sweep_id, checked.sweep.model_dump(mode="json"), self.worker,
                                 self.board, parent_run_id)

    def follow(self, sweep_id: str) -> list[dict]:
        jobs, trials = ray.get(self.board.drain_all.remote())
        for update in jobs.get(sweep_id, []):
            self.job.update(update)
        self.rows = merge_trials(self.rows, trials.get(sweep_id, {}))
        return self.rows

    def child_runs(self, parent_run_id: str) -> list:
        client = MlflowClient(tracking_uri=self.settings.tracking_uri)
        experiment = client.get_run(parent_run_id).info.experiment_id
        return client.search_runs([experiment], max_results=1000, filter_string=(
            f"tags.`mlflow.parentRunId` = '{parent_run_id}'"))


def _saved_as_finished(experiment: Path) -> int:
    """How many trials the newest experiment state Tune saved in `experiment` (what a restore
    reads) holds as finished."""
    saved = max(experiment.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime,
                default=None)
    if saved is None:
        return 0
    trials = json.loads(saved.read_text())["trial_data"]
    return sum(json.loads(trial)["status"] == "TERMINATED" for trial, _ in trials)


def _live_placement_groups() -> set[str]:
    return {pg_id for pg_id, pg in ray.util.placement_group_table().items()
            if pg["state"] != "REMOVED"}


def _remove_leaked_placement_groups(before: set[str], quiet_s: float = 1.0) -> None:
    """A killed driver leaves its trials' placement groups (the reason the dispatcher stops a
    sweep through Tune instead); a pending one may still be created after the kill."""
    deadline = time.monotonic() + 30
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < quiet_s and time.monotonic() < deadline:
        leaked = _live_placement_groups() - before
        for pg_id in leaked:
            remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(pg_id))))
        if leaked:
            quiet_since = time.monotonic()
        time.sleep(0.1)  # between two polls: the wait is for a quiet second, not a condition


def test_a_killed_driver_resumes_from_tunes_state_without_rerunning_finished_trials(
        ray_cluster, settings):
    driver = Driver(settings)
    # One trial at a time; the third runs long enough to be cut off by the kill.
    spec = {"name": "resume", "base": tiny_base(10_000),
            "space": {"training.max_runtime_s": {"type": "grid",
                                                 "values": [0.01, 0.01, 4.0, 0.01]}},
            "search": {"algorithm": "grid", "max_concurrent": 1}}
    groups_before = _live_placement_groups()
    first = driver.launch("resume-1", spec)

    def two_finished_and_a_third_running() -> bool:
        rows = driver.follow("resume-1")
        return sum(r.get("status") == "succeeded" for r in rows) == 2 and len(rows) >= 3

    wait_until(two_finished_and_a_third_running, 180,
               lambda: f"two trials to finish and a third to start: {driver.rows}")
    # Tune saves its experiment state every 2 s (a file being written reads as not yet); the
    # third trial runs 4 s.
    state = Path(tune_storage(worker_settings(settings)), "resume-1")
    wait_until(lambda: _saved_as_finished(state) >= 2, 30,
               "Tune's saved state to hold the two finished trials",
               ignoring=(OSError, ValueError))
    finished = {r["trial_id"] for r in driver.follow("resume-1") if r["status"] == "succeeded"}
    assert len(finished) == 2, driver.rows
    ray.cancel(first, force=True)
    with pytest.raises(ray.exceptions.RayError):
        ray.get(first, timeout=60)
    _remove_leaked_placement_groups(groups_before)
    parent_run_id = driver.job["mlflow_run_id"]

    second = driver.launch("resume-1", spec, parent_run_id)
    ready, _ = ray.wait([second], timeout=300)
    assert ready, (f"the resumed sweep did not end: {driver.follow('resume-1')}, "
                   f"{ray.available_resources()}, {ray.util.placement_group_table()}")
    summary = ray.get(second)

    assert summary["restored"] is True and not summary["cancelled"]
    assert [r["status"] for r in summary["trials"]] == ["succeeded"] * 4
    assert finished < {r["trial_id"] for r in summary["trials"]}
    runs = driver.child_runs(parent_run_id)
    by_trial: dict[str, list[str]] = {}
    for run in runs:
        by_trial.setdefault(run.data.tags["layerwise.trial_id"], []).append(run.info.status)
    for trial_id in finished:
        assert by_trial[trial_id] == ["FINISHED"], "a finished trial ran again"
    cut = next(r["trial_id"] for r in summary["trials"]
               if r["params"]["training.max_runtime_s"] == 4.0)
    assert by_trial[cut] == ["FINISHED"], "the cut-off trial did not continue its own run"
    assert len(runs) == 4
    parent = MlflowClient(tracking_uri=settings.tracking_uri).get_run(parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials/succeeded"] == 4
    assert Path(settings.home_dir, "tune", "resume-1").is_dir()


def test_population_based_training_exploits_inside_each_trials_run(ray_cluster, settings):
    driver = Driver(settings)
    spec = {"name": "pbt", "base": tiny_base(3),
            "space": {"optimizer.lr": {"type": "grid", "values": [1e-4, 0.1]}},
            "search": {"algorithm": "random", "metric": "val/loss", "mode": "min"},
            "scheduler": {"name": "pbt", "perturbation_interval": 1, "synch": True,
                          "quantile_fraction": 0.5, "resample_probability": 0.0}}

    summary = ray.get(driver.launch("pbt-1", spec), timeout=300)

    assert [r["status"] for r in summary["trials"]] == ["succeeded"] * 2
    assert all(r["epoch"] == 3 for r in summary["trials"])
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    segments = 0
    for trial in summary["trials"]:
        run_id = trial["mlflow_run_id"]
        assert client.get_run(run_id).info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(run_id, "val/loss")]
        assert len(steps) == 3 and steps == sorted(set(steps)), steps  # one run, continued
        segments += len(client.get_metric_history(run_id, "hparam/optimizer.lr"))
    assert segments > 2, "no trial was ever restarted from a checkpoint"
    driver.follow("pbt-1")
    assert len(driver.child_runs(driver.job["mlflow_run_id"])) == 2
