"""The job store's schema history as an Alembic environment (`env.py`, `versions/`), run by
`services.db.migrate` at every start under the migration lock."""
