"""One MLflow run per job, whenever a crash lands: an experiment retried after its worker died
before the job store learned its run id, and a sweep whose driver died before, during or after
its trials, each keep the one run they started."""

from __future__ import annotations

import pytest
import ray
from mlflow.tracking import MlflowClient

from services.contract import mlflow_names as names
from services.contract.sweep_spec import SweepSpec
from services.tracking_store import prepare_tracking_store
from tests.utils.postgres import fresh_database, sqlite_and_postgres
from tests.utils.settings import local_settings, worker_settings
from tests.utils.specs import mlp_spec
from tests.utils.waiting import wait_until
from tests.workers.test_metric_steps_once import _repeated_steps
from tests.workers.test_resumed_run_metrics import Crash
from tests.workers.test_sweep_driver import (
    Driver,
    _live_placement_groups,
    _remove_leaked_placement_groups,
    tiny_base,
)
from workers.run import RunOptions, run_experiment
from workers.sweeps.summary import TAG_KIND, ParentRun


def _runs_tagged(tracking_uri: str, experiment_id: str, **tags: str) -> list:
    query = " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())
    return MlflowClient(tracking_uri=tracking_uri).search_runs(
        [experiment_id], filter_string=query, max_results=100)


@pytest.fixture(params=sqlite_and_postgres())
def tracked(request: pytest.FixtureRequest, tmp_path):
    """Settings whose MLflow store is SQLite, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return local_settings(tmp_path)
    uri = fresh_database("layerwise_one_run")
    prepare_tracking_store(uri)
    return local_settings(tmp_path, mlflow_tracking_uri=uri)


def test_an_experiment_retried_before_its_run_id_was_stored_continues_its_run(tracked):
    settings = tracked
    worker = worker_settings(settings, checkpoint_every_s=0)
    spec = mlp_spec(data={"name": "xor", "params": {"n": 100}}, model={"hidden": [4]},
                    training={"epochs": 4, "batch_size": 16}, diagnostics={"plots": False})
    reports: list[dict] = []
    with pytest.raises(SystemExit):  # the worker dies; the store never heard of the run
        run_experiment("job-lost-id", spec, worker, reports.append,
                       RunOptions(hooks=Crash(epoch=3)))
    first = reports[0]

    # The retry, as the dispatcher launches it without a run id.
    result = run_experiment("job-lost-id", spec, worker, reports.append)

    continued = [r["mlflow_run_id"] for r in reports if "mlflow_run_id" in r]
    assert continued == [first["mlflow_run_id"]] * 2
    assert result["resumed_from_epoch"] == 2  # from the first attempt's checkpoint
    runs = _runs_tagged(settings.tracking_uri, first["mlflow_experiment_id"],
                        **{names.TAG_JOB_ID: "job-lost-id"})
    assert [(r.info.run_id, r.info.status) for r in runs] == [
        (first["mlflow_run_id"], "FINISHED")]
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    assert _repeated_steps(client, first["mlflow_run_id"]) == {}
    assert runs[0].data.params["training.epochs"] == "4"


def test_a_finished_experiment_is_not_continued_by_a_new_run_of_its_job_id(settings):
    """Only a run an attempt left open is continued: a job id run again after its run ended
    (tests reuse ids) gets a run of its own."""
    worker = worker_settings(settings)
    spec = mlp_spec(data={"name": "xor", "params": {"n": 40}}, model={"hidden": [4]},
                    training={"epochs": 1, "batch_size": 20}, diagnostics={"plots": False})
    reports: list[dict] = []
    run_experiment("job-twice", spec, worker, reports.append)
    run_experiment("job-twice", spec, worker, reports.append)
    ids = [r["mlflow_run_id"] for r in reports if "mlflow_run_id" in r]
    assert len(set(ids)) == 2


def test_a_parent_run_opened_again_without_its_id_is_the_same_run(settings):
    """The driver died after creating the parent run, before the store learned its id."""
    sweep = SweepSpec.model_validate({
        "name": "lost-parent", "base": tiny_base(1),
        "space": {"optimizer.lr": {"type": "grid", "values": [0.01, 0.1]}}})
    worker = worker_settings(settings)
    first = ParentRun.open(sweep, "sweep-lost", worker)
    first.client.set_terminated(first.run_id, status="FAILED")  # as a close_runs would
    again = ParentRun.open(sweep, "sweep-lost", worker)
    other = ParentRun.open(sweep, "sweep-other", worker)

    assert again.run_id == first.run_id != other.run_id
    runs = _runs_tagged(settings.tracking_uri, first.experiment_id,
                        **{names.TAG_SWEEP_ID: "sweep-lost", TAG_KIND: "sweep"})
    assert [(r.info.run_id, r.info.status) for r in runs] == [(first.run_id, "RUNNING")]
    assert runs[0].data.params["trials"] == "2"


@pytest.mark.slow
def test_a_sweep_keeps_one_parent_run_through_crashes_before_during_and_after_its_trials(
        ray_cluster, settings):
    driver = Driver(settings)
    spec = {"name": "one-parent", "base": tiny_base(10_000),
            "space": {"training.max_runtime_s": {"type": "grid", "values": [0.01, 3.0]}},
            "search": {"algorithm": "grid", "max_concurrent": 1}}
    sweep_id = "one-parent-1"
    # Before the trials: the driver created the parent run and died; nobody stored its id.
    created = ParentRun.open(SweepSpec.model_validate(spec), sweep_id,
                             worker_settings(settings))
    groups_before = _live_placement_groups()
    first = driver.launch(sweep_id, spec)  # as the dispatcher relaunches: no parent run id
    wait_until(lambda: any(r.get("status") == "running" for r in driver.follow(sweep_id)
                           if r["params"]["training.max_runtime_s"] == 3.0), 180,
               lambda: f"the long trial to start: {driver.rows}")
    # During the trials: killed, and again relaunched without the parent run's id.
    ray.cancel(first, force=True)
    with pytest.raises(ray.exceptions.RayError):
        ray.get(first, timeout=60)
    _remove_leaked_placement_groups(groups_before)
    summary = ray.get(driver.launch(sweep_id, spec), timeout=300)
    assert [r["status"] for r in summary["trials"]] == ["succeeded"] * 2
    # After the trials: the driver ended, its result never reached the store; run again.
    ray.get(driver.launch(sweep_id, spec), timeout=300)

    assert driver.job["mlflow_run_id"] == created.run_id
    parents = _runs_tagged(settings.tracking_uri, created.experiment_id,
                           **{names.TAG_SWEEP_ID: sweep_id, TAG_KIND: "sweep"})
    assert [(r.info.run_id, r.info.status) for r in parents] == [(created.run_id, "FINISHED")]
    children = driver.child_runs(created.run_id)
    finished = [r for r in children if r.info.status == "FINISHED"]
    assert len(finished) == 2, [(r.data.tags.get("layerwise.trial_id"), r.info.status)
                                for r in children]
    assert all(r.info.status in ("FINISHED", "KILLED") for r in children)
