"""Handoffs on a platform: where the internal card is, its brief, the SLA timer, who was looped in,
how the conversation was closed, and what each delivered outbox action produced (a message ts).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("card_channel", sa.String(64)))
        batch.add_column(sa.Column("card_ts", sa.String(64)))
        batch.add_column(sa.Column("brief", sa.JSON))
        batch.add_column(sa.Column("sla_due", Stamp))
        batch.add_column(sa.Column("sla_route", sa.String(64)))
        batch.add_column(sa.Column("resolved_by", sa.String(64)))
        batch.add_column(sa.Column("csat", sa.Integer))
    op.create_index("ix_conversations_sla_due", "conversations", ["sla_due"])
    op.create_table(
        "loop_ins",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(36), sa.ForeignKey("conversations.id"), nullable=False),
        sa.Column("route", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("at", Stamp, nullable=False),
    )
    op.create_index("ix_loop_ins_conversation_id", "loop_ins", ["conversation_id"])
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("result", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("result")
    op.drop_table("loop_ins")
    op.drop_index("ix_conversations_sla_due", "conversations")
    with op.batch_alter_table("conversations") as batch:
        for name in ("csat", "resolved_by", "sla_route", "sla_due", "brief", "card_ts", "card_channel"):
            batch.drop_column(name)
