"""Reports read conversations by the period they started in: an index on ``started_at``.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_conversations_started", "conversations", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_conversations_started", table_name="conversations")
