"""Alembic's environment for the job store. `services.db.migrate` passes the connection it
holds (under the migration lock) in `config.attributes["connection"]`; the `alembic` command
line, for writing a new revision, passes `sqlalchemy.url` instead."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from services.db import VERSION_TABLE, Base

config = context.config


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as opened:
        _run(opened)
    engine.dispose()
