"""Alembic migrations of the results store; run them with ``python -m harness.migrate``."""
