"""The durable job queue: create, read, claim, progress and finish jobs.

Every status change goes through `lifecycle.transition`. Rows stay in here; callers get
`JobRecord`s.
"""

from __future__ import annotations

import builtins
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any, cast, overload

from sqlalchemy import Table, and_, bindparam, func, literal, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.db import JobRow, make_engine, make_sessionmaker
from services.lifecycle import Status, now, transition
from services.records import JobRecord, Progress


def _record(row: JobRow) -> JobRecord:
    """The row as the API shows it (times in UTC, progress typed)."""
    return JobRecord(
            id=row.id, job_type=row.job_type, name=row.name, project=row.project,
            status=row.status, spec=row.spec, spec_hash=row.spec_hash, priority=row.priority,
            attempts=row.attempts, max_attempts=row.max_attempts, owner=row.owner,
            sweep_id=row.sweep_id, param_count=row.param_count,
            created_at=_utc(row.created_at), started_at=_utc(row.started_at),
            finished_at=_utc(row.finished_at), progress=Progress(**(row.progress or {})),
            error=row.error, result=row.result, diagnosis=row.diagnosis,
            mlflow_run_id=row.mlflow_run_id, mlflow_experiment_id=row.mlflow_experiment_id,
            repair_of=row.repair_of, repair_candidate=row.repair_candidate,
            parent_run_id=row.parent_run_id, attempt_log=list(row.attempt_log or []),
            memory_estimate=row.memory_estimate)


def _same_request(first: JobRecord, key: str, spec: dict[str, Any], job_type: str
                  ) -> JobRecord:
    """The first record, when this repeat of its idempotency key carries the same body."""
    if first.spec != spec or first.job_type != job_type:
        raise IdempotencyKeyReused(key, first.id)
    return first


@overload
def _utc(value: datetime) -> datetime: ...
@overload
def _utc(value: datetime | None) -> datetime | None: ...
def _utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every stored time is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


_JOBS = cast(Table, JobRow.__table__)
# The owner's job with this idempotency key (NULL when new, or when the key is NULL) beside
# the owner's queued count, counted up to the cap (`cap`) and no further: its cost stays that of
# the cap however deep the queue. One round trip, one row always (the outer join is on a one-row
# select). Built once: SQLAlchemy then reuses the compiled SQL.
_OWNER_QUEUED = select(literal(1).label("one")).where(
    _JOBS.c.owner == bindparam("owner"), _JOBS.c.status == Status.QUEUED.value
).limit(bindparam("cap")).subquery()
_REPEAT_AND_QUEUED = select(
    _JOBS.c.id,
    select(func.count()).select_from(_OWNER_QUEUED).scalar_subquery(),
).select_from(select(literal(1).label("one")).subquery()).outerjoin(
    _JOBS, and_(_JOBS.c.owner == bindparam("owner"), _JOBS.c.idempotency_key == bindparam("key")))
_INSERT = _JOBS.insert()

# The owners with queued jobs, by a loose index scan of ix_jobs_queue_by_owner (status, owner,
# ...): one index seek per owner, where SELECT DISTINCT would read every queued row. Written
# out because neither SQLite nor PostgreSQL plans it by itself.
_QUEUED_OWNERS = text("""
WITH RECURSIVE queued_owners(owner) AS (
    SELECT MIN(owner) FROM jobs WHERE status = :queued AND job_type IN :job_types
    UNION ALL
    SELECT (SELECT MIN(owner) FROM jobs WHERE status = :queued AND job_type IN :job_types
            AND owner > queued_owners.owner)
    FROM queued_owners WHERE queued_owners.owner IS NOT NULL
)
SELECT owner FROM queued_owners WHERE owner IS NOT NULL LIMIT :owners
""").bindparams(bindparam("job_types", expanding=True))
# One owner's next queued jobs, from the head of ix_jobs_queue_by_owner. Built once: SQLAlchemy
# then reuses the compiled SQL (the dispatcher reads it for every owner at every launch batch).
_OWNER_HEADS = select(_JOBS).where(
    _JOBS.c.status == bindparam("queued"), _JOBS.c.owner == bindparam("owner"),
    _JOBS.c.job_type.in_(bindparam("job_types", expanding=True)),
).order_by(_JOBS.c.priority.desc(), _JOBS.c.seq.asc()).limit(bindparam("per_owner"))
# The dispatcher chooses among the queued jobs of this many owners at a time (in the order of
# their names; the next owners' jobs come into view as these owners' queues empty).
QUEUE_OWNERS_READ = 256


# A queued job's why-pending answer counts the jobs ahead of it up to this many.
AHEAD_COUNTED = 1000


class JobNotFound(LookupError):
    def __init__(self, job_id: str):
        super().__init__(f"no job {job_id!r}; GET /v1/experiments lists the jobs you can see")
        self.job_id = job_id


class IdempotencyKeyReused(ValueError):
    """An Idempotency-Key seen before with another body (HTTP 422, as the IETF draft on the
    header says): the first request's record is not this request's answer."""

    def __init__(self, key: str, job_id: str):
        super().__init__(f"Idempotency-Key {key!r} was first sent with a different body (job "
                         f"{job_id}); resend that body to get its record, or use a new key "
                         "for a new request")
        self.key = key


class QueueFull(Exception):
    """The owner has as many queued jobs as the service allows (HTTP 429)."""

    def __init__(self, owner: str, queued: int, cap: int):
        super().__init__(f"{owner} has {queued} queued jobs, the cap "
                         f"(LAYERWISE_MAX_QUEUED_PER_OWNER) is {cap}; wait for some to start "
                         "or cancel some")


class JobStore:
    def __init__(self, url: str):
        self.engine = make_engine(url)
        self._sessions = make_sessionmaker(self.engine)
        # SQLite lets one writer in at a time and puts the others to sleep in its busy
        # handler (1, 2, 5, 10 ms and longer), which capped concurrent submissions and
        # stretched their tail latency (BENCHMARKS.md). Writers in this process queue on a lock
        # instead and are woken the moment it frees. PostgreSQL locks rows and needs none.
        self._write_lock = threading.Lock() if url.startswith("sqlite") else nullcontext()

    def session(self) -> Session:
        return self._sessions()

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        """A session inside one write transaction."""
        with self._write_lock, self.session() as session, session.begin():
            yield session

    # -- create and read -----------------------------------------------------------------
    def create(self, *, spec: dict[str, Any], spec_hash: str, name: str | None, project: str,
               priority: int = 0, owner: str = "anonymous", job_type: str = "experiment",
               idempotency_key: str | None = None, param_count: int | None = None,
               max_attempts: int = 3, sweep_id: str | None = None,
               max_queued: int | None = None, repair_of: str | None = None,
               repair_candidate: int | None = None, parent_run_id: str | None = None,
               memory_estimate: dict[str, int] | None = None) -> tuple[JobRecord, bool]:
        """Queue a job. Returns (record, created); with an idempotency key seen before for this
        owner, the first record and created=False. One transaction: the repeat lookup, the
        owner's queue room (QueueFull at `max_queued`) and the insert.

        Raises:
            QueueFull: the owner already has `max_queued` queued jobs.
        """
        values: dict[str, Any] = {"id": uuid.uuid4().hex, "job_type": job_type, "name": name,
                  "project": project, "status": Status.QUEUED.value, "spec": spec,
                  "spec_hash": spec_hash, "priority": priority, "attempts": 0, "owner": owner,
                  "idempotency_key": idempotency_key, "param_count": param_count,
                  "max_attempts": max_attempts, "sweep_id": sweep_id, "created_at": now(),
                  "updated_at": now(), "progress": {}, "repair_of": repair_of,
                  "repair_candidate": repair_candidate, "parent_run_id": parent_run_id,
                  "attempt_log": [], "memory_estimate": memory_estimate}
        try:
            # Core statements built once, not the ORM's unit of work: the ORM took most of the
            # API process's CPU per submission (BENCHMARKS.md).
            with self._write_lock, self.engine.begin() as connection:
                repeat, queued = connection.execute(_REPEAT_AND_QUEUED, {
                    "owner": owner, "key": idempotency_key, "cap": max_queued or 0}).one()
                if repeat is None:
                    if max_queued is not None and queued >= max_queued:
                        raise QueueFull(owner, queued, max_queued)
                    connection.execute(_INSERT, values)
        except IntegrityError:
            # A concurrent request with the same key won the insert.
            existing = self._by_idempotency_key(owner, idempotency_key or "")
            if existing is None:
                raise
            return _same_request(existing, idempotency_key or "", spec, job_type), False
        if repeat is not None:
            return _same_request(self.get(repeat), idempotency_key or "", spec, job_type), False
        return _record(JobRow(**values)), True

    def _by_idempotency_key(self, owner: str, key: str) -> JobRecord | None:
        with self.session() as session:
            row = session.scalar(select(JobRow).where(JobRow.owner == owner,
                                                      JobRow.idempotency_key == key))
            return _record(row) if row else None

    def get(self, job_id: str) -> JobRecord:
        with self.session() as session:
            row = session.scalar(select(JobRow).where(JobRow.id == job_id))
            if row is None:
                raise JobNotFound(job_id)
            return _record(row)

    def find_repair(self, owner: str, repair_of: str, candidate: int) -> JobRecord | None:
        """The owner's repair of job `repair_of` that tries its fix `candidate`, queued,
        running or finished (a cancelled one does not count), newest first; None if none."""
        query = (select(JobRow).where(JobRow.repair_of == repair_of, JobRow.owner == owner,
                                      JobRow.repair_candidate == candidate,
                                      JobRow.status != Status.CANCELLED.value)
                 .order_by(JobRow.seq.desc()).limit(1))
        with self.session() as session:
            row = session.scalar(query)
            return _record(row) if row else None

    def cancelled_repairs(self, owner: str, repair_of: str, candidate: int) -> int:
        """How many of the owner's repairs of job `repair_of` with fix `candidate` were
        cancelled."""
        query = (select(func.count()).select_from(JobRow)
                 .where(JobRow.repair_of == repair_of, JobRow.owner == owner,
                        JobRow.repair_candidate == candidate,
                        JobRow.status == Status.CANCELLED.value))
        with self.session() as session:
            return int(session.scalar(query) or 0)

    def list(self, *, status: str | None = None, project: str | None = None,
             sweep_id: str | None = None, owner: str | None = None, job_type: str | None = None,
             verdict: str | None = None, limit: int = 50, cursor: int | None = None
             ) -> tuple[list[JobRecord], int | None]:
        """Newest first. Returns (records, next cursor or None). `verdict` is the final
        diagnosis's (a running job's live one is not matched)."""
        query = select(JobRow).order_by(JobRow.seq.desc()).limit(limit + 1)
        for column, value in ((JobRow.status, status), (JobRow.project, project),
                              (JobRow.sweep_id, sweep_id), (JobRow.owner, owner),
                              (JobRow.job_type, job_type),
                              (JobRow.diagnosis["verdict"].as_string(), verdict)):
            if value is not None:
                query = query.where(column == value)
        if cursor is not None:
            query = query.where(JobRow.seq < cursor)
        with self.session() as session:
            rows = list(session.scalars(query))
        next_cursor = rows[limit - 1].seq if len(rows) > limit else None
        return [_record(r) for r in rows[:limit]], next_cursor

    def jobs_ahead(self, job_id: str, *, up_to: int = AHEAD_COUNTED) -> int:
        """Queued jobs that the dispatcher will consider before this one, counted up to
        `up_to`: read from the head of the queue's index, so the answer costs the same at any
        depth (`up_to` means "at least that many")."""
        with self.session() as session:
            row = self._row(session, job_id)
            ahead = (select(literal(1).label("one")).where(
                JobRow.status == Status.QUEUED.value, JobRow.seq != row.seq,
                (JobRow.priority > row.priority)
                | ((JobRow.priority == row.priority) & (JobRow.seq < row.seq)))
                .order_by(JobRow.priority.desc(), JobRow.seq.asc()).limit(up_to).subquery())
            return session.scalar(select(func.count()).select_from(ahead)) or 0

    def count_by_status(self) -> dict[str, int]:
        with self.session() as session:
            rows = session.execute(select(JobRow.status, func.count()).group_by(JobRow.status))
            return dict(rows.tuples().all())

    # -- the dispatcher's side -------------------------------------------------------------
    def claim_next(self, *, fits: Any = None, job_types: tuple[str, ...] = ("experiment",),
                   scan: int = 4) -> JobRecord | None:
        """Atomically move the best queued job (highest priority, then oldest) that `fits`
        to running and count the attempt (the `fifo` order, among each owner's first `scan`)."""
        for record in self.queue_heads(job_types=job_types, per_owner=scan):
            if fits is None or fits(record):
                claimed = self.claim([record.id])
                if claimed:
                    return claimed[0]
        return None

    def queue_heads(self, *, job_types: tuple[str, ...], per_owner: int = 8,
                    owners: int = QUEUE_OWNERS_READ) -> builtins.list[JobRecord]:
        """The first `per_owner` queued jobs (of `job_types`) of each owner with queued jobs,
        in the queue's order: priority, then submission. What the dispatcher chooses among:
        the queue's first `per_owner` jobs are among them whoever owns them, and so is every
        owner's next job. Read from the index's head, owner by owner (the owners themselves by
        a loose index scan), so the cost is that of the owners, not of the queue's depth."""
        with self.engine.connect() as connection:
            names = connection.scalars(_QUEUED_OWNERS, {
                "queued": Status.QUEUED.value, "job_types": builtins.list(job_types),
                "owners": owners}).all()
            rows = [row for owner in names for row in connection.execute(_OWNER_HEADS, {
                "queued": Status.QUEUED.value, "owner": owner,
                "job_types": builtins.list(job_types), "per_owner": per_owner})]
        rows.sort(key=lambda row: (-row.priority, row.seq))
        return [_record(cast(JobRow, row)) for row in rows]  # a Row reads as a JobRow

    def claim(self, job_ids: builtins.list[str]) -> builtins.list[JobRecord]:
        """Move these queued jobs to running in one transaction and count an attempt of each;
        returns them in the order given. A job no longer queued (another dispatcher claimed
        it, or it was cancelled meanwhile) is left out: on PostgreSQL the rows are locked (FOR
        UPDATE re-reads a row another transaction changed, so no job is taken twice), in the
        order of their ids whoever calls (two dispatchers locking the same rows in different
        orders would deadlock); SQLite has one writer at a time."""
        wanted = builtins.list(dict.fromkeys(job_ids))
        if not wanted:
            return []
        with self._writing() as session:
            rows = {row.id: row for row in session.scalars(
                select(JobRow).where(JobRow.id.in_(wanted), JobRow.status == Status.QUEUED.value)
                .order_by(JobRow.id).with_for_update())}
            taken = [rows[job_id] for job_id in wanted if job_id in rows]
            for row in taken:  # started_at in the order given: the order of their launches
                transition(row, Status.RUNNING, attempts=row.attempts + 1, error=None)
            session.flush()
            return [_record(row) for row in taken]

    def update(self, job_id: str, **fields: Any) -> JobRecord:
        """Set plain fields (progress, MLflow ids, result) without changing the status."""
        with self._writing() as session:
            row = self._row(session, job_id)
            for key, value in fields.items():
                setattr(row, key, value)
            row.updated_at = now()
            return _record(row)

    def move(self, job_id: str, target: Status, **fields: Any) -> JobRecord:
        """Change a job's status through `transition` (raises IllegalTransition)."""
        with self._writing() as session:
            row = self._row(session, job_id, lock=True)
            transition(row, target, **fields)
            return _record(row)

    def end_attempt(self, job_id: str, decide: Callable[[JobRecord], tuple[
            Status, dict[str, Any], dict[str, Any]]]) -> JobRecord:
        """Move a job whose attempt ended early and append that attempt's entry to its
        attempt_log, in one transaction: `decide` is given the job as it is now (its row
        locked) and returns the status to move to, the entry and the fields set with it. The
        choice (retry or fail) rests on the log, so it is read and written under one lock."""
        with self._writing() as session:
            row = self._row(session, job_id, lock=True)
            target, entry, fields = decide(_record(row))
            transition(row, target, attempt_log=[*(row.attempt_log or []), entry], **fields)
            return _record(row)

    def _row(self, session: Session, job_id: str, *, lock: bool = False) -> JobRow:
        query = select(JobRow).where(JobRow.id == job_id)
        row = session.scalar(query.with_for_update() if lock else query)
        if row is None:
            raise JobNotFound(job_id)
        return row

    def touch(self, job_ids: builtins.list[str]) -> None:
        """The heartbeat: the dispatcher running these jobs is alive."""
        if not job_ids:
            return
        with self._writing() as session:
            session.execute(update(JobRow).where(JobRow.id.in_(job_ids))
                            .values(updated_at=now()))

    def orphans(self, older_than_s: float, *, exclude: set[str]) -> builtins.list[JobRecord]:
        """Running jobs whose heartbeat is older than `older_than_s` seconds."""
        cutoff = now() - timedelta(seconds=older_than_s)
        with self.session() as session:
            rows = session.scalars(select(JobRow).where(
                JobRow.status == Status.RUNNING.value, JobRow.updated_at < cutoff))
            return [_record(r) for r in rows if r.id not in exclude]

    def ping(self) -> None:
        with self.session() as session:
            session.execute(select(1))
