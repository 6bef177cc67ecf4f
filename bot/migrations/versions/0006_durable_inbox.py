"""The durable inbox: an event's payload is stored before it is acknowledged and worked on from there;
outbox rows remember whether a post may already exist; a route is looped in once per conversation.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbox") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="message"))
        batch.add_column(sa.Column("payload", sa.JSON))
        batch.add_column(sa.Column("thread_key", sa.String(256)))
        batch.add_column(sa.Column("seq", sa.String(40), nullable=False, server_default=""))
        # Rows from before this migration were handled when they were recorded.
        batch.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="done"))
        batch.add_column(sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("last_error", sa.Text))
        batch.add_column(sa.Column("not_before", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("done_at", sa.DateTime(timezone=True)))
    op.create_index("ix_inbox_pending", "inbox", ["status", "id"])
    op.create_index("ix_inbox_thread", "inbox", ["thread_key", "status", "seq", "id"])
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("maybe_posted", sa.Boolean, nullable=False, server_default=sa.false()))
    # A route is looped in once: keep the first of any duplicates, then let the schema say so.
    op.execute("DELETE FROM loop_ins WHERE id NOT IN "
               "(SELECT min(id) FROM loop_ins GROUP BY conversation_id, route)")
    with op.batch_alter_table("loop_ins") as batch:
        batch.create_unique_constraint("uq_loop_in_route", ["conversation_id", "route"])


def downgrade() -> None:
    with op.batch_alter_table("loop_ins") as batch:
        batch.drop_constraint("uq_loop_in_route", type_="unique")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("maybe_posted")
    op.drop_index("ix_inbox_thread", "inbox")
    op.drop_index("ix_inbox_pending", "inbox")
    with op.batch_alter_table("inbox") as batch:
        for column in ("done_at", "not_before", "last_error", "attempts", "status", "seq", "thread_key", "payload",
                       "kind"):
            batch.drop_column(column)
