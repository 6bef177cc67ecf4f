"""Cursors: the last message seen per place (a Discord channel or thread), so that the messages missed
during a gateway reconnect or a restart are fetched and handled.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cursors",
        sa.Column("platform", sa.String(32), primary_key=True),
        sa.Column("place", sa.String(64), primary_key=True),
        sa.Column("last_seen", sa.BigInteger, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cursors")
