"""Alembic environment: migrations run on the connection that harness.migrate passes in."""

from alembic import context

from harness.store.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `python -m harness.migrate --db URL`, not the alembic command.")
# batch mode lets SQLite, which cannot ALTER most things, copy-and-swap tables instead
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
