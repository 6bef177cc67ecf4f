"""Conversation memory for detail gathering and the guard: what the bot waits for, the fields it
asked for, its last message, and the customer's time zone.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("customer_timezone", sa.String(64)))
        batch.add_column(sa.Column("awaiting", sa.String(16)))
        batch.add_column(sa.Column("asked", sa.JSON, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("last_reply", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        for name in ("last_reply", "asked", "awaiting", "customer_timezone"):
            batch.drop_column(name)
