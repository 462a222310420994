"""The job store on SQLite and PostgreSQL: create, read, list, claim order, transitions."""

from __future__ import annotations

import threading

import pytest

from services.lifecycle import IllegalTransition, Status
from services.store import IdempotencyKeyReused, JobNotFound, JobStore, QueueFull


def _create(store: JobStore, *, priority: int = 0, owner: str = "anonymous",
            key: str | None = None):
    record, _ = store.create(spec={"resources": {"cpus": 1}}, spec_hash="h", name="n",
                             project="p", priority=priority, owner=owner, idempotency_key=key)
    return record


def test_create_and_get_round_trip(store_url):
    store = JobStore(store_url)
    record = _create(store)
    got = store.get(record.id)
    assert got.status == "queued" and got.attempts == 0 and got.spec == {"resources": {"cpus": 1}}
    assert got.created_at.tzinfo is not None
    with pytest.raises(JobNotFound):
        store.get("missing")


def test_progress_keeps_the_live_diagnosis(store_url):
    """The worker's progress carries the live diagnosis; the record must not drop it."""
    store = JobStore(store_url)
    record = _create(store)
    diagnosis = {"verdict": "vanishing", "detected_at_step": 40,
                 "findings": [{"verdict": "vanishing", "fix": {"model.activation": "relu"}}]}
    store.update(record.id, progress={"epoch": 2, "epochs": 10, "step": 80,
                                      "metrics": {"train/loss": 2.3}, "diagnosis": diagnosis})
    got = store.get(record.id).progress
    assert got.epoch == 2 and got.diagnosis == diagnosis
    assert store.get(_create(store).id).progress.diagnosis is None


def test_claim_takes_highest_priority_then_oldest_and_counts_the_attempt(store_url):
    store = JobStore(store_url)
    low = _create(store, priority=0)
    high_old = _create(store, priority=5)
    high_new = _create(store, priority=5)
    order = [store.claim_next().id for _ in range(3)]
    assert order == [high_old.id, high_new.id, low.id]
    assert store.claim_next() is None
    claimed = store.get(high_old.id)
    assert claimed.status == "running" and claimed.attempts == 1 and claimed.started_at


def test_claim_skips_jobs_that_do_not_fit(store_url):
    store = JobStore(store_url)
    first = _create(store, priority=9)
    second = _create(store)
    got = store.claim_next(fits=lambda r: r.id != first.id)
    assert got is not None and got.id == second.id
    assert store.get(first.id).status == "queued"


def test_concurrent_claims_never_hand_out_a_job_twice(store_url):
    store = JobStore(store_url)
    ids = {_create(store).id for _ in range(30)}
    claimed: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        while (record := store.claim_next()) is not None:
            with lock:
                claimed.append(record.id)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(ids)


def test_transitions_refuse_illegal_moves(store_url):
    store = JobStore(store_url)
    record = _create(store)
    with pytest.raises(IllegalTransition, match="cannot become succeeded"):
        store.move(record.id, Status.SUCCEEDED)
    store.claim_next()
    store.move(record.id, Status.QUEUED, error="retry")  # a retry goes back to the queue
    store.claim_next()
    done = store.move(record.id, Status.SUCCEEDED, result={"val/loss": 0.1})
    assert done.finished_at is not None and done.result == {"val/loss": 0.1}
    assert done.attempts == 2
    for target in Status:
        with pytest.raises(IllegalTransition, match="final"):
            store.move(record.id, target)


def test_idempotency_key_is_per_owner(store_url):
    store = JobStore(store_url)
    first = _create(store, key="abc", owner="alice")
    again, created = store.create(spec={"resources": {"cpus": 1}}, spec_hash="h", name="n",
                                  project="p", owner="alice", idempotency_key="abc")
    assert not created and again.id == first.id
    other = _create(store, key="abc", owner="bob")
    assert other.id != first.id


def test_an_idempotency_key_repeated_with_another_body_is_refused(store_url):
    store = JobStore(store_url)
    first = _create(store, key="abc", owner="alice")
    with pytest.raises(IdempotencyKeyReused, match=f"'abc'.*{first.id}"):
        store.create(spec={"resources": {"cpus": 2}}, spec_hash="h", name="n", project="p",
                     owner="alice", idempotency_key="abc")
    with pytest.raises(IdempotencyKeyReused):
        store.create(spec={"resources": {"cpus": 1}}, spec_hash="h", name="n", project="p",
                     owner="alice", idempotency_key="abc", job_type="sweep")


def test_the_queue_cap_counts_queued_jobs_and_lets_a_repeat_through(store_url):
    store = JobStore(store_url)
    first = store.create(spec={}, spec_hash="h", name=None, project="p", owner="carol",
                         idempotency_key="k0", max_queued=2)[0]
    store.create(spec={}, spec_hash="h", name=None, project="p", owner="carol", max_queued=2)
    with pytest.raises(QueueFull, match="LAYERWISE_MAX_QUEUED_PER_OWNER"):
        store.create(spec={}, spec_hash="h", name=None, project="p", owner="carol",
                     max_queued=2)
    with pytest.raises(QueueFull, match="carol has 2 queued jobs"):  # a new key: no repeat
        store.create(spec={}, spec_hash="h", name=None, project="p", owner="carol",
                     idempotency_key="k-new", max_queued=2)
    # A retry of a stored submission is answered with its record, full queue or not.
    again, created = store.create(spec={}, spec_hash="h", name=None, project="p",
                                  owner="carol", idempotency_key="k0", max_queued=2)
    assert not created and again.id == first.id
    store.create(spec={}, spec_hash="h", name=None, project="p", owner="dave", max_queued=2)
    assert store.count_by_status() == {"queued": 3}


def test_concurrent_submissions_are_each_stored_once(store_url):
    """Many threads submitting at once (as the API's thread pool does), some repeating a key:
    no 'database is locked', one row per key."""
    store = JobStore(store_url)
    errors: list[BaseException] = []

    def submit(worker: int) -> None:
        try:
            for i in range(20):
                store.create(spec={}, spec_hash="h", name=None, project="p",
                             idempotency_key=f"{worker % 4}-{i}", max_queued=1000)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.count_by_status() == {"queued": 80}


def test_list_filters_and_pages(store_url):
    store = JobStore(store_url)
    made = [_create(store, owner="alice" if i % 2 else "bob") for i in range(7)]
    page, cursor = store.list(limit=3)
    assert [r.id for r in page] == [r.id for r in reversed(made)][:3] and cursor is not None
    rest, end = store.list(limit=10, cursor=cursor)
    assert len(rest) == 4 and end is None
    assert {r.owner for r in store.list(owner="alice")[0]} == {"alice"}
    store.claim_next()
    assert len(store.list(status="running")[0]) == 1
    assert store.count_by_status() == {"queued": 6, "running": 1}
