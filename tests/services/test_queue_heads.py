"""What the dispatcher chooses among and how it takes it, on SQLite and PostgreSQL:
`JobStore.queue_heads` (each owner's first queued jobs, in the queue's order) and
`JobStore.claim` (queued to running, each job once, whoever else claims it meanwhile)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, cast

import pytest
from sqlalchemy import Table, text

from services.db import JobRow
from services.lifecycle import Status, now
from services.records import JobRecord
from services.store import JobStore


@pytest.fixture
def store(store_url: str) -> Iterator[JobStore]:
    made = JobStore(store_url)
    yield made
    made.engine.dispose()


def _create(store: JobStore, owner: str, *, priority: int = 0,
            job_type: str = "experiment") -> JobRecord:
    record, _ = store.create(spec={"resources": {"cpus": 1}}, spec_hash="h", name=None,
                             project="p", priority=priority, owner=owner, job_type=job_type)
    return record


def _ids(records: list[JobRecord]) -> list[str]:
    return [record.id for record in records]


def _expected(made: list[JobRecord], per_owner: int, skip: frozenset[str] = frozenset()
              ) -> list[str]:
    """Each owner's first `per_owner` of `made` (in submission order) by priority, then
    submission; all of them by priority, then submission."""
    order = sorted(range(len(made)), key=lambda i: (-made[i].priority, i))
    taken: dict[str, int] = {}
    heads = []
    for i in order:
        record = made[i]
        if record.id in skip:
            continue
        if taken.get(record.owner, 0) < per_owner:
            taken[record.owner] = taken.get(record.owner, 0) + 1
            heads.append(record.id)
    return heads


# -- queue_heads -------------------------------------------------------------------------------
def test_heads_are_each_owners_first_jobs_in_priority_then_submission_order(
        store: JobStore) -> None:
    owners = ["carol", "alice", "bob"]
    priorities = [0, 1, 0, 2, 0, 0, 1, 0, 2, 0, 1, 0, 0, 0, 1, 0, 0, 2, 0, 0, 1]
    made = [_create(store, owners[i % 3] if i % 4 else "alice", priority=p)
            for i, p in enumerate(priorities)]
    for per_owner in (1, 2, 3, 100):
        heads = store.queue_heads(job_types=("experiment",), per_owner=per_owner)
        assert _ids(heads) == _expected(made, per_owner), per_owner
        assert all(record.status == "queued" for record in heads)
    assert store.queue_heads(job_types=("experiment",), per_owner=100) \
        == [store.get(record_id) for record_id in _expected(made, 100)]


def test_an_owner_whose_jobs_were_all_submitted_last_is_among_the_heads(store: JobStore) -> None:
    alices = [_create(store, "alice") for _ in range(40)]
    bobs = [_create(store, "bob") for _ in range(2)]
    heads = store.queue_heads(job_types=("experiment",), per_owner=3)
    assert _ids(heads) == _ids(alices[:3] + bobs)
    # a lower priority, too: it follows every higher-priority head, not the whole queue
    zoes = _create(store, "zoe", priority=-1)
    heads = store.queue_heads(job_types=("experiment",), per_owner=3)
    assert _ids(heads) == _ids(alices[:3] + bobs + [zoes])


def test_heads_are_of_the_job_types_asked_for(store: JobStore) -> None:
    made = [_create(store, "alice", job_type="sweep"), _create(store, "alice"),
            _create(store, "bob", job_type="sweep"), _create(store, "alice", job_type="sweep"),
            _create(store, "alice"), _create(store, "carol")]
    experiments = store.queue_heads(job_types=("experiment",), per_owner=2)
    assert _ids(experiments) == _ids([made[1], made[4], made[5]])  # bob has none
    sweeps = store.queue_heads(job_types=("sweep",), per_owner=1)
    assert _ids(sweeps) == _ids([made[0], made[2]])
    both = store.queue_heads(job_types=("experiment", "sweep"), per_owner=2)
    assert _ids(both) == _ids([made[0], made[1], made[2], made[5]])
    assert store.queue_heads(job_types=("nothing",), per_owner=2) == []


def test_heads_skip_jobs_no_longer_queued(store: JobStore) -> None:
    made = [_create(store, "alice" if i % 2 else "bob", priority=i % 3) for i in range(16)]
    gone = {made[i].id for i in (1, 2, 5, 6, 9)}
    assert len(store.claim([made[1].id, made[2].id])) == 2  # running
    store.move(made[5].id, Status.CANCELLED)
    store.move(made[6].id, Status.CANCELLED)
    (finished,) = store.claim([made[9].id])
    store.move(finished.id, Status.SUCCEEDED)
    heads = store.queue_heads(job_types=("experiment",), per_owner=3)
    assert _ids(heads) == _expected(made, 3, skip=frozenset(gone))
    assert not gone & set(_ids(heads))
    # back in the queue after a retry: among the heads again, in its place
    store.move(made[1].id, Status.QUEUED)
    heads = store.queue_heads(job_types=("experiment",), per_owner=3)
    assert _ids(heads) == _expected(made, 3, skip=frozenset(gone - {made[1].id}))


def test_heads_are_of_at_most_the_owners_asked_for(store: JobStore) -> None:
    made = {owner: [_create(store, owner) for _ in range(3)]
            for owner in ("dave", "carol", "alice", "bob")}
    heads = store.queue_heads(job_types=("experiment",), per_owner=2, owners=2)
    assert {record.owner for record in heads} == {"alice", "bob"}  # in the order of names
    assert _ids(heads) == _ids(made["alice"][:2] + made["bob"][:2])
    everyone = store.queue_heads(job_types=("experiment",), per_owner=2, owners=4)
    assert {record.owner for record in everyone} == set(made)
    # an owner whose queue emptied makes room for the next one by name
    for record in made["alice"]:
        store.move(record.id, Status.CANCELLED)
    heads = store.queue_heads(job_types=("experiment",), per_owner=2, owners=2)
    assert {record.owner for record in heads} == {"bob", "carol"}


def test_an_empty_queue_has_no_heads(store: JobStore) -> None:
    assert store.queue_heads(job_types=("experiment",)) == []
    record = _create(store, "alice")
    store.move(record.id, Status.CANCELLED)
    assert store.queue_heads(job_types=("experiment",)) == []
    assert store.claim_next() is None


# -- claim -------------------------------------------------------------------------------------
def test_claim_moves_queued_jobs_to_running_and_counts_the_attempt(store: JobStore) -> None:
    made = [_create(store, "alice") for _ in range(4)]
    claimed = store.claim([made[2].id, made[0].id])
    assert _ids(claimed) == [made[2].id, made[0].id]
    for record in claimed:
        assert record.status == "running" and record.attempts == 1
        assert record.started_at is not None and record.error is None
        stored = store.get(record.id)
        assert stored.status == "running" and stored.attempts == 1
    assert store.get(made[1].id).status == "queued"
    assert store.claim([made[2].id, made[0].id]) == []  # taken already: none twice

    # a retry: back in the queue with the error, claimed again as the second attempt
    store.move(made[2].id, Status.QUEUED, error="worker lost")
    (again,) = store.claim([made[2].id])
    assert again.attempts == 2 and again.error is None and again.status == "running"
    assert again.started_at == claimed[0].started_at  # the first start stays


def test_claim_leaves_out_jobs_no_longer_queued(store: JobStore) -> None:
    made = [_create(store, "alice") for _ in range(5)]
    store.move(made[1].id, Status.CANCELLED)
    store.claim([made[3].id])
    store.move(made[3].id, Status.FAILED, error="boom")
    claimed = store.claim([record.id for record in made] + ["no-such-job", made[0].id])
    assert _ids(claimed) == [made[0].id, made[2].id, made[4].id]  # each once
    assert store.get(made[1].id).status == "cancelled" and store.get(made[1].id).attempts == 0
    assert store.get(made[3].id).status == "failed" and store.get(made[3].id).attempts == 1
    assert store.claim([]) == []


def _claim_concurrently(store: JobStore, lists: list[list[str]], chunk: int
                        ) -> tuple[list[list[str]], list[BaseException]]:
    """Each list claimed by a thread of its own, `chunk` ids per claim, all starting at once."""
    barrier = threading.Barrier(len(lists))
    taken: list[list[str]] = [[] for _ in lists]
    errors: list[BaseException] = []

    def claim_all(mine: list[str], out: list[str]) -> None:
        try:
            barrier.wait()
            for start in range(0, len(mine), chunk):
                out.extend(_ids(store.claim(mine[start:start + chunk])))
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=claim_all, args=(mine, out))
               for mine, out in zip(lists, taken, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return taken, errors


def test_concurrent_claims_of_overlapping_jobs_take_each_job_once(store: JobStore) -> None:
    ids = [_create(store, "alice" if i % 3 else "bob").id for i in range(90)]
    # both threads claim the middle third, in the same order, in chunks that straddle it
    taken, errors = _claim_concurrently(store, [ids[:60], ids[30:]], chunk=7)
    assert errors == []
    everything = taken[0] + taken[1]
    assert sorted(everything) == sorted(ids)  # every job claimed, none twice
    assert set(ids[:30]) <= set(taken[0]) and set(ids[60:]) <= set(taken[1])
    for job_id in ids:
        stored = store.get(job_id)
        assert stored.status == "running" and stored.attempts == 1


def test_concurrent_claims_in_different_orders_take_each_job_once(store: JobStore) -> None:
    """Two dispatchers under the fair policy order the same heads by their own shares, so
    their batches can list the same jobs in different orders. claim is documented as safe
    with several dispatchers on PostgreSQL too: it must not fail (a deadlock) here."""
    ids = [_create(store, "alice" if i % 2 else "bob").id for i in range(60)]
    taken, errors = _claim_concurrently(store, [ids, ids[::-1]], chunk=len(ids))
    assert errors == [], [f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                          for exc in errors]
    assert sorted(taken[0] + taken[1]) == sorted(ids)


# -- claim_next, built on them -----------------------------------------------------------------
def test_claim_next_takes_the_best_head_that_fits_across_owners(store: JobStore) -> None:
    alices = [_create(store, "alice") for _ in range(5)]
    bobs = _create(store, "bob", priority=1)  # last, but a higher priority
    carols = _create(store, "carol")

    def claimed(fits: Callable[[JobRecord], bool] | None = None) -> str | None:
        record = store.claim_next(fits=fits)
        return record.id if record is not None else None

    assert claimed() == bobs.id
    assert claimed() == alices[0].id
    assert claimed(lambda record: record.owner == "carol") == carols.id
    assert store.get(carols.id).attempts == 1
    assert claimed(lambda record: False) is None
    assert [claimed() for _ in range(4)] == _ids(alices[1:])
    assert claimed() is None


# -- at depth ----------------------------------------------------------------------------------
def _bulk_queue(store: JobStore, owner: str, count: int) -> None:
    """`count` queued jobs of `owner`, straight into the table in one insert."""
    created = now() - timedelta(hours=1)
    rows: list[dict[str, Any]] = [{
        "id": uuid.uuid4().hex, "job_type": "experiment", "name": f"bulk-{i}", "project": "p",
        "status": Status.QUEUED.value, "spec": {"i": i}, "spec_hash": f"{i:016x}",
        "priority": 0, "attempts": 0, "max_attempts": 3, "owner": owner,
        "idempotency_key": None, "param_count": None, "sweep_id": None,
        "created_at": created + timedelta(milliseconds=i),
        "updated_at": created + timedelta(milliseconds=i), "progress": {}}
        for i in range(count)]
    with store.engine.begin() as connection:
        connection.execute(cast(Table, JobRow.__table__).insert(), rows)


def test_an_owner_behind_a_deep_queue_is_still_among_the_heads(store: JobStore) -> None:
    _bulk_queue(store, "alice", 3000)
    bobs = _create(store, "bob")  # one job, submitted after all 3,000 of alice's
    with store.engine.connect() as connection:
        first_two = connection.execute(text(
            "SELECT id FROM jobs WHERE owner = 'alice' ORDER BY seq LIMIT 2")).scalars().all()
    heads = store.queue_heads(job_types=("experiment",), per_owner=2)
    assert _ids(heads) == [*first_two, bobs.id]
    # what the fair order needs: bob's job is a candidate, and claim_next reaches it too
    got = store.claim_next(fits=lambda record: record.owner == "bob", scan=2)
    assert got is not None and got.id == bobs.id
    assert _ids(store.queue_heads(job_types=("experiment",), per_owner=2)) == first_two
