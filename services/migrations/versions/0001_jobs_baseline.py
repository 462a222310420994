"""The job table as it stood when the store moved to Alembic: its late columns and its indexes.

A store created before then has no version table: this revision brings it to that shape,
whatever earlier version made it (each step is skipped where it is done already). A fresh store
never runs it: `services.db.migrate` creates the current table and stamps it.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Added after the first table, each nullable (rows written before read as they did).
LATE_COLUMNS = (
    ("repair_of", sa.String(32)),
    ("repair_candidate", sa.Integer()),
    ("parent_run_id", sa.String(64)),
    ("attempt_log", sa.JSON()),
    ("memory_estimate", sa.JSON()),
)

INDEXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ix_jobs_id", ("id",)),
    ("ix_jobs_sweep_id", ("sweep_id",)),
    ("ix_jobs_repair_of", ("repair_of",)),
    ("ix_jobs_owner_status", ("owner", "status")),
    ("ix_jobs_owner_type_seq", ("owner", "job_type", "seq")),
    ("ix_jobs_owner_type_status_seq", ("owner", "job_type", "status", "seq")),
    ("ix_jobs_type_seq", ("job_type", "seq")),
    ("ix_jobs_type_status_seq", ("job_type", "status", "seq")),
    ("ix_jobs_project_type_seq", ("project", "job_type", "seq")),
    ("ix_jobs_queue_order", ("status", "priority DESC", "seq")),
    ("ix_jobs_queue_by_owner", ("status", "owner", "priority DESC", "seq")),
)

# ix_jobs_claim (status, priority, seq) made the claim sort the queue (priority desc, seq asc);
# the one-column ones are prefixes of the indexes above.
REPLACED_INDEXES = ("ix_jobs_claim", "ix_jobs_owner", "ix_jobs_project", "ix_jobs_status")


def upgrade() -> None:
    present = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("jobs")}
    for name, kind in LATE_COLUMNS:
        if name not in present:
            op.add_column("jobs", sa.Column(name, kind, nullable=True))
    for name, columns in INDEXES:
        unique = name == "ix_jobs_id"  # `id` is the record's key: index=True, unique=True
        op.create_index(name, "jobs", [sa.text(c) if " " in c else c for c in columns],
                        unique=unique, if_not_exists=True)
    for name in REPLACED_INDEXES:
        op.drop_index(name, table_name="jobs", if_exists=True)
