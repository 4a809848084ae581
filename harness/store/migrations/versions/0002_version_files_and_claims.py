"""Submission-time overrides, stored entry files, and claims that stop two runs evaluating the same thing.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns: SQLite adds them with a plain ALTER TABLE, so no table is copied. Constraints are
    # named as PostgreSQL would name them, so that a later SQLite batch migration can refer to them.
    with op.batch_alter_table("entry_versions") as batch:
        batch.add_column(sa.Column("submitted_at_override", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("override_reason", sa.Text(), nullable=True))
    op.create_table(
        "version_files",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("archive", sa.LargeBinary(), nullable=False),
        sa.Column("stored_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["version_id"], ["entry_versions.id"], name="version_files_version_id_fkey"),
        sa.PrimaryKeyConstraint("version_id", name="version_files_pkey"),
    )
    op.create_table(
        "claims",
        sa.Column("eval_key", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="claims_run_id_fkey"),
        sa.PrimaryKeyConstraint("eval_key", name="claims_pkey"),
    )
