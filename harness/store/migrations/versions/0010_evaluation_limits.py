"""The time and memory limits each evaluation ran under, so that an entry that failed on a limit is evaluated again
once that limit is raised (None for evaluations stored before).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("evaluations") as batch:
        batch.add_column(sa.Column("timeout", sa.Double(), nullable=True))
        batch.add_column(sa.Column("memory_limit", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("evaluations") as batch:
        batch.drop_column("memory_limit")
        batch.drop_column("timeout")
