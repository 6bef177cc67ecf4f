"""The QA review queue: decisions sampled for a person to tag, and the tags.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(36), sa.ForeignKey("conversations.id"), nullable=False, index=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("intent", sa.String(64), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("article", sa.String(512)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tag", sa.String(64)),
        sa.Column("note", sa.Text),
        sa.Column("tagged_by", sa.String(64)),
        sa.Column("tagged_at", sa.DateTime(timezone=True)),
        sa.Index("ix_reviews_intent", "intent", "tagged_at"),
    )


def downgrade() -> None:
    op.drop_table("reviews")
