"""Large entry files kept in chunks; each run's host, pid and process start time.

A file larger than one database value allows (SQLite's default limit is 1 GB, PostgreSQL's bytea 1 GB) is kept
as ordered chunks in ``file_chunks`` with ``file_blobs.data`` left empty; blobs stored before stay as they are.
A run's host, pid and process start time let the next run on that host tell a run killed with ``kill -9`` from a
live one. Runs stored before have none and keep the claim lease rule.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "file_chunks",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["sha256"], ["file_blobs.sha256"], name="file_chunks_sha256_fkey"),
        sa.PrimaryKeyConstraint("sha256", "seq", name="file_chunks_pkey"),
    )
    with op.batch_alter_table("file_blobs") as batch:
        batch.alter_column("data", existing_type=sa.LargeBinary(), nullable=True)
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("host", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("process_started_at", sa.DateTime(), nullable=True))
