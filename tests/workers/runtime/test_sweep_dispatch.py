"""The dispatcher's side of sweeps without Ray: what a sweep reserves while it runs, and the
recovery that queues again the sweeps a stopped service left running."""

from __future__ import annotations

from datetime import timedelta

import services.store as store_module
from services import lifecycle
from services.store import JobStore
from tests.utils.specs import mlp_spec
from workers.runtime.dispatcher import JOB_TYPES, Dispatcher
from workers.runtime.sweep_jobs import reserved


def _sweep(store: JobStore, *, cpus: float = 1.0, gpus: float = 0.0,
           max_concurrent: int | None = None, trials: int = 10):
    payload = {"base": mlp_spec(resources={"cpus": cpus, "gpus": gpus}),
               "search": {"max_concurrent": max_concurrent}}
    record, _ = store.create(spec=payload, spec_hash="h", name="s", project="p",
                             job_type="sweep")
    return store.update(record.id, result={"trials_total": trials, "trials": []})


def test_a_sweep_reserves_a_trials_resources_times_the_trials_it_runs_at_once(settings):
    store = JobStore(settings.job_store_url)
    cluster = {"cpus": 8.0, "gpus": 2.0}
    assert reserved(_sweep(store), cluster) == (8.0, 0.0)  # as many as fit
    assert reserved(_sweep(store, max_concurrent=3), cluster) == (3.0, 0.0)
    assert reserved(_sweep(store, cpus=2, gpus=1), cluster) == (4.0, 2.0)  # GPUs limit it
    assert reserved(_sweep(store, trials=2), cluster) == (2.0, 0.0)  # no more than it has
    assert reserved(_sweep(store, cpus=16), cluster) == (16.0, 0.0)  # one trial at least
    experiment, _ = store.create(spec=mlp_spec(resources={"cpus": 2}), spec_hash="h",
                                 name="e", project="p")
    assert reserved(experiment, cluster) == (2.0, 0.0)


def test_sweeps_left_running_by_a_stopped_service_are_queued_again(settings, monkeypatch):
    store = JobStore(settings.job_store_url)
    sweep = _sweep(store)
    experiment, _ = store.create(spec=mlp_spec(), spec_hash="h", name="e", project="p")
    claimed = {store.claim_next(job_types=JOB_TYPES).id, store.claim_next(job_types=JOB_TYPES).id}
    assert claimed == {sweep.id, experiment.id}

    # Nobody vouches for them any more: once the store's clock is past the orphan limit, the
    # heartbeat check re-queues both, sweep included.
    later = lifecycle.now() + timedelta(seconds=settings.orphan_after_s + 1)
    monkeypatch.setattr(store_module, "now", lambda: later)
    Dispatcher(store, settings)._heartbeat_and_recover()

    again = store.get(sweep.id)
    assert again.status == "queued" and "dispatcher stopped" in again.error
    assert again.result["trials_total"] == 10  # the table it had is kept
    assert store.get(experiment.id).status == "queued"
    relaunched = {store.claim_next(job_types=JOB_TYPES).id for _ in range(2)}
    assert relaunched == {sweep.id, experiment.id}
    assert store.get(sweep.id).attempts == 2
