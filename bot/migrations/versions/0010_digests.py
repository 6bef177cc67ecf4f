"""The weekly digest: one row per week, inserted by the process that posts it (insert-if-absent decides
which of several processes does).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "digests",
        sa.Column("week", sa.String(16), primary_key=True),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True)),
        sa.Column("ts", sa.String(64)),
    )


def downgrade() -> None:
    op.drop_table("digests")
