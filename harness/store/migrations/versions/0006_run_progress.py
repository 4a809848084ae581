"""Each run's progress: the entry being evaluated now, its images done of the total and the time left, so that the
dashboard can show a run it started. Runs stored before have none.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-09
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("progress", sa.JSON(), nullable=True))
