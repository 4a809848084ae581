"""The secret phase's sealed output (error, log, time, peak memory: shown only after the reveal) and the memorisation
check's counts, on every evaluation. Evaluations stored before have none (NULL): they ran both sets in one process.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

COLUMNS = (
    ("sealed_error", sa.Text()),
    ("sealed_log", sa.Text()),
    ("sealed_seconds", sa.Double()),
    ("sealed_peak_memory_bytes", sa.BigInteger().with_variant(sa.Integer(), "sqlite")),
    ("memo_pairs", sa.Integer()),
    ("memo_only_original", sa.Integer()),
    ("memo_only_copy", sa.Integer()),
)


def upgrade() -> None:
    with op.batch_alter_table("evaluations") as batch:
        for name, kind in COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("evaluations") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
