"""Byte counts as 64-bit integers: PostgreSQL's INTEGER stops at 2 GiB, and an entry may use more memory.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return  # SQLite's INTEGER already holds 64 bits
    op.alter_column("evaluations", "peak_memory_bytes", type_=sa.BigInteger(), existing_nullable=True)
    op.alter_column("entry_versions", "weights_bytes", type_=sa.BigInteger(), existing_nullable=False)
