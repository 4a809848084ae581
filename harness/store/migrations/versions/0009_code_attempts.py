"""Wrong personal codes typed on the Submit page, per address and member, so that guessing is limited (10 a minute)
across dashboard processes and restarts.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "code_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("member", sa.String(length=200), nullable=True),
        sa.Column("code_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("id", name="code_attempts_pkey"),
    )
    op.create_index("ix_code_attempts_address_at", "code_attempts", ["address", "at"])
    op.create_index("ix_code_attempts_member_at", "code_attempts", ["member", "at"])


def downgrade() -> None:
    op.drop_index("ix_code_attempts_member_at", table_name="code_attempts")
    op.drop_index("ix_code_attempts_address_at", table_name="code_attempts")
    op.drop_table("code_attempts")
