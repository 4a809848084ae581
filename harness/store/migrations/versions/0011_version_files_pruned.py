"""When a version's files were removed to save space ([storage] keep_versions in competition.toml): the row stays,
with its manifest (which files it held), so that the version reads "files removed to save space", not "not kept".

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("version_files") as batch:
        batch.add_column(sa.Column("pruned_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("version_files") as batch:
        batch.drop_column("pruned_at")
