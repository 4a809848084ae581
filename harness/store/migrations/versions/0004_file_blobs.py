"""Entry files kept once each: a version lists its files (path -> sha256) and each file's bytes are stored once.

Revision 0002 kept every version's files as one zip, so a member who changed one line of model.py stored the
weights again. Zips already stored stay as they are and are still read; new versions use the manifest.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "file_blobs",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="file_blobs_pkey"),
    )
    with op.batch_alter_table("version_files") as batch:
        batch.add_column(sa.Column("manifest", sa.JSON(), nullable=True))
        batch.alter_column("archive", existing_type=sa.LargeBinary(), nullable=True)
