"""The store at depth: the indexes an existing store gets at start, keyset pages, the claim
order, and the bounded counts (the owner's queue room, the jobs ahead of a queued job)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, inspect, text

from services import db
from services.lifecycle import Status
from services.store import JobStore, QueueFull
from tests.utils.postgres import fresh_database, sqlite_and_postgres


@pytest.fixture(params=sqlite_and_postgres())
def fresh_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """An empty database of its own (not the shared test database's job tables)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    name = f"layerwise_test_depth_{abs(hash(request.node.name)) % 10**8}"
    url = fresh_database(name)
    yield url
    from tests.utils.postgres import POSTGRES_URL
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _create(store: JobStore, i: int, *, priority: int = 0, owner: str = "anonymous",
            project: str = "p", max_queued: int | None = None):
    record, _ = store.create(spec={"i": i}, spec_hash=f"{i:016x}", name=f"job-{i}",
                             project=project, priority=priority, owner=owner,
                             max_queued=max_queued)
    return record


def _index_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return {index["name"] for index in inspect(engine).get_indexes("jobs")}
    finally:
        engine.dispose()


def test_a_store_made_by_an_earlier_version_gets_the_new_indexes_at_start(fresh_url):
    # The table as an earlier version left it: its claim index, none of the new ones.
    engine = create_engine(fresh_url)
    db.Base.metadata.create_all(engine)
    with engine.begin() as connection:
        for index in db.JobRow.__table__.indexes:
            connection.execute(text(f"DROP INDEX IF EXISTS {index.name}"))
        connection.execute(text("CREATE INDEX ix_jobs_claim ON jobs (status, priority, seq)"))
        connection.execute(text("CREATE INDEX ix_jobs_status ON jobs (status)"))
    engine.dispose()
    assert "ix_jobs_queue_order" not in _index_names(fresh_url)

    store = JobStore(fresh_url)
    _create(store, 0)
    names = _index_names(fresh_url)
    expected = {index.name for index in db.JobRow.__table__.indexes}
    assert expected <= names
    assert {"ix_jobs_queue_order", "ix_jobs_owner_type_seq", "ix_jobs_type_seq"} <= names
    assert "ix_jobs_claim" not in names and "ix_jobs_status" not in names
    store.engine.dispose()

    again = JobStore(fresh_url)  # idempotent: a second start changes nothing
    assert _index_names(fresh_url) == names
    assert [r.name for r in again.list()[0]] == ["job-0"]
    again.engine.dispose()


def test_pages_behind_a_deep_cursor_return_the_right_jobs(fresh_url):
    store = JobStore(fresh_url)
    made = [_create(store, i, owner="alice" if i % 3 else "bob", project=f"p{i % 2}")
            for i in range(230)]
    for record in made[::7]:
        store.move(record.id, Status.CANCELLED)

    def every_page(**filters) -> list[str]:
        seen, cursor = [], None
        while True:
            page, cursor = store.list(limit=25, cursor=cursor, **filters)
            seen += [r.id for r in page]
            if cursor is None:
                return seen

    def expected(keep) -> list[str]:
        cancelled = {r.id for r in made[::7]}
        return [r.id for r in reversed(made)
                if keep(r, "cancelled" if r.id in cancelled else "queued")]

    assert every_page() == expected(lambda r, s: True)
    assert every_page(owner="alice", job_type="experiment") == expected(
        lambda r, s: r.owner == "alice")
    assert every_page(owner="bob", status="queued", project="p1") == expected(
        lambda r, s: r.owner == "bob" and s == "queued" and r.project == "p1")
    # a cursor deep in the queue: the page right behind it, newest first
    deep = made[40]
    page, cursor = store.list(limit=10, cursor=int(_seq(store, deep.id)))
    assert [r.id for r in page] == [r.id for r in reversed(made[30:40])]
    assert cursor is not None
    store.engine.dispose()


def _seq(store: JobStore, job_id: str) -> int:
    with store.engine.connect() as connection:
        return connection.execute(text("SELECT seq FROM jobs WHERE id = :id"),
                                  {"id": job_id}).scalar_one()


def test_claims_follow_priority_then_submission_order(fresh_url):
    store = JobStore(fresh_url)
    priorities = [0, 2, 0, 1, 2, 0, 1]
    made = [_create(store, i, priority=p) for i, p in enumerate(priorities)]
    order = sorted(range(len(made)), key=lambda i: (-priorities[i], i))
    claimed = [store.claim_next().id for _ in made]
    assert claimed == [made[i].id for i in order]
    assert store.claim_next() is None
    store.engine.dispose()


def test_jobs_ahead_counts_in_claim_order_up_to_its_bound(fresh_url):
    store = JobStore(fresh_url)
    made = [_create(store, i, priority=1 if i % 4 == 0 else 0) for i in range(20)]
    last = made[-1]  # priority 0, the newest: every other queued job is ahead of it
    assert store.jobs_ahead(last.id) == 19
    assert store.jobs_ahead(last.id, up_to=5) == 5  # counted no further
    assert store.jobs_ahead(made[0].id) == 0  # priority 1, the oldest
    assert store.jobs_ahead(made[4].id) == 1  # behind made[0] only
    store.move(made[0].id, Status.CANCELLED)
    assert store.jobs_ahead(made[4].id) == 0 and store.jobs_ahead(last.id) == 18
    store.engine.dispose()


def test_the_owners_queue_room_is_still_enforced(fresh_url):
    store = JobStore(fresh_url)
    for i in range(3):
        _create(store, i, owner="alice", max_queued=3)
    _create(store, 10, owner="bob", max_queued=3)  # another owner's room is its own
    with pytest.raises(QueueFull, match="3 queued jobs"):
        _create(store, 3, owner="alice", max_queued=3)
    started = store.claim_next(fits=lambda r: r.owner == "alice")
    assert started is not None and started.owner == "alice"
    _create(store, 4, owner="alice", max_queued=3)  # room again
    store.engine.dispose()
