"""One module per schema change of the job table, oldest first (Alembic revisions)."""
