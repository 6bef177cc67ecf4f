"""Initial schema: conversations, messages, decisions, transitions, outbox, inbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("workspace", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("thread", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("customer_name", sa.String(256)),
        sa.Column("organisation", sa.String(64)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("intent", sa.String(64)),
        sa.Column("severity", sa.String(16)),
        sa.Column("route", sa.String(64)),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("claimed_by", sa.String(64)),
        sa.Column("started_at", Stamp, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
        sa.UniqueConstraint("platform", "workspace", "channel", "thread", name="uq_conversation_thread"),
    )
    op.create_index("ix_conversations_customer", "conversations", ["platform", "customer_id", "started_at"])
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(36), sa.ForeignKey("conversations.id"), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("author_id", sa.String(64), nullable=False),
        sa.Column("author_name", sa.String(256)),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("event_id", sa.String(128)),
        sa.Column("at", Stamp, nullable=False),
    )
    op.create_index("ix_messages_conversation_id", "messages", ["conversation_id"])
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(36), sa.ForeignKey("conversations.id"), nullable=False),
        sa.Column("message_id", sa.Integer, sa.ForeignKey("messages.id")),
        sa.Column("intent", sa.String(64), nullable=False),
        sa.Column("escalate", sa.Boolean, nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("route", sa.String(64)),
        sa.Column("rules", sa.JSON, nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("output", sa.JSON, nullable=False),
        sa.Column("policy_version", sa.String(64), nullable=False),
        sa.Column("at", Stamp, nullable=False),
    )
    op.create_index("ix_decisions_conversation_id", "decisions", ["conversation_id"])
    op.create_table(
        "transitions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(36), sa.ForeignKey("conversations.id"), nullable=False),
        sa.Column("from_state", sa.String(16)),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("cause", sa.String(256), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("at", Stamp, nullable=False),
    )
    op.create_index("ix_transitions_conversation_id", "transitions", ["conversation_id"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(36), sa.ForeignKey("conversations.id"), nullable=False),
        sa.Column("decision_id", sa.Integer, sa.ForeignKey("decisions.id")),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("key", sa.String(160), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("not_before", Stamp, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("sent_at", Stamp),
    )
    op.create_index("ix_outbox_conversation_id", "outbox", ["conversation_id"])
    op.create_index("ix_outbox_due", "outbox", ["status", "not_before"])
    op.create_table(
        "inbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("received_at", Stamp, nullable=False),
        sa.UniqueConstraint("platform", "event_id", name="uq_inbox_event"),
    )


def downgrade() -> None:
    for table in ("inbox", "outbox", "transitions", "decisions", "messages", "conversations"):
        op.drop_table(table)
