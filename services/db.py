"""The job table (SQLAlchemy 2) and engines for SQLite or PostgreSQL."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from services.lifecycle import now


class Base(DeclarativeBase):
    """The metadata every table of the job store registers in."""


class JobRow(Base):
    """An experiment or a sweep in the durable queue. Never leaves services.store."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_idempotency"),
        # Listings, newest first (`GET /v1/experiments`, `/v1/sweeps`): each filter's rows in
        # `seq` order, so a page reads its rows and few more, at any depth, instead of sorting
        # every matching row (BENCHMARKS.md row 9). A token's caller sees its own jobs (owner
        # first); an admin sees all; every listing is of one job type. The owner's queued
        # count at every submission reads (owner, status).
        Index("ix_jobs_owner_status", "owner", "status"),
        Index("ix_jobs_owner_type_seq", "owner", "job_type", "seq"),
        Index("ix_jobs_owner_type_status_seq", "owner", "job_type", "status", "seq"),
        Index("ix_jobs_type_seq", "job_type", "seq"),
        Index("ix_jobs_type_status_seq", "job_type", "status", "seq"),
        Index("ix_jobs_project_type_seq", "project", "job_type", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                     primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    job_type: Mapped[str] = mapped_column(String(16), default="experiment")
    name: Mapped[str | None] = mapped_column(String(250))
    project: Mapped[str] = mapped_column(String(250))
    status: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    spec_hash: Mapped[str] = mapped_column(String(32))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    owner: Mapped[str] = mapped_column(String(120), default="anonymous")
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    sweep_id: Mapped[str | None] = mapped_column(String(32), index=True)
    param_count: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    diagnosis: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    mlflow_experiment_id: Mapped[str | None] = mapped_column(String(64))
    # Links the service writes and a user cannot (a spec's tags cannot name them): the job a
    # repair repairs, which of that job's candidate fixes it tries, and the MLflow run its own
    # run is a child of.
    repair_of: Mapped[str | None] = mapped_column(String(32), index=True)
    repair_candidate: Mapped[int | None] = mapped_column(Integer)
    parent_run_id: Mapped[str | None] = mapped_column(String(64))
    # One entry per attempt that ended without finishing the job: its number, why it ended
    # (worker lost, node lost, OOM-killed, ...) and whether it counted against max_attempts.
    attempt_log: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    # The dry run's estimate of the job's peak memory, in bytes by part and in total.
    memory_estimate: Mapped[dict[str, int] | None] = mapped_column(JSON)


# The queue in the dispatcher's order (priority first, then submission order): the claim and the
# why-pending count read it from its head instead of sorting the queue.
Index("ix_jobs_queue_order", JobRow.status, JobRow.priority.desc(), JobRow.seq)
# The same, owner by owner: the owners with queued jobs and each one's next jobs, which the fair
# queue order chooses among (`JobStore.queue_heads`).
Index("ix_jobs_queue_by_owner", JobRow.status, JobRow.owner, JobRow.priority.desc(), JobRow.seq)

def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # WAL lets the API read while the dispatcher writes; the timeout waits out a writer.
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    engine = create_engine(url, pool_size=10, max_overflow=20)
    _ping_after_idle(engine)
    return engine


# A pooled connection idle this long is pinged before use: the server may have restarted or
# dropped it meanwhile. SQLAlchemy's pool_pre_ping pings at every checkout: a round trip and a
# measurable share of the API process's CPU per submission (BENCHMARKS.md), on a busy pool
# where none can be stale.
# A connection that dies while in use still fails that one call, and the pool then drops
# every connection opened before it.
PING_AFTER_IDLE_S = 5.0


def _ping_after_idle(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _note_idle(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the pool replaces the connection and tries again
            raise DisconnectionError(f"a pooled connection is gone: {exc}") from exc


def make_sessionmaker(engine: Engine) -> sessionmaker:
    with migration_lock(engine):
        migrate(engine)
    return sessionmaker(engine, expire_on_commit=False)


# Any fixed number: the key of the PostgreSQL advisory lock every process of this job store
# takes while it creates or migrates the table.
_MIGRATION_LOCK_KEY = 0x1A7E_5715


@contextmanager
def migration_lock(engine: Engine, key: int = _MIGRATION_LOCK_KEY) -> Iterator[None]:
    """One process at a time creates or migrates the store: replicas and a dispatcher started
    together on a fresh store otherwise race to create the same table (PostgreSQL's catalog
    refuses the second CREATE TABLE). PostgreSQL: a session advisory lock on `key`; SQLite: an
    exclusive lock on a file beside the database (in-memory databases are one process's);
    other databases: none."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            connection.commit()
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with file_lock(Path(database).with_name(Path(database).name + ".migrate.lock")):
        yield


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (created if missing), held for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# Alembic's record of the job table's revision. Not Alembic's default `alembic_version`: the
# MLflow tracking store, which keeps its own there, may live in the same database.
VERSION_TABLE = "layerwise_alembic_version"
MIGRATIONS = Path(__file__).with_name("migrations")


def migrate(engine: Engine) -> None:
    """The job table at the newest revision (`services/migrations/versions`): a store without
    one is created as declared here and stamped; one an earlier version made (with or without
    a revision recorded) runs the revisions it lacks. Call it under `migration_lock`."""
    # Imported here: the client commands import the store's records, not its migrations.
    from alembic import command
    from alembic.config import Config

    with engine.begin() as connection:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        if inspect(connection).has_table(JobRow.__tablename__):
            command.upgrade(config, "head")
        else:
            Base.metadata.create_all(connection)
            command.stamp(config, "head")
