"""Persistence on SQLAlchemy's async core: SQLite by default, PostgreSQL by URL, the same code.

Tables: conversations, messages, decisions (with their inputs and rule ids), transitions, an outbox
of actions, and an inbox whose unique (platform, event id) makes event dedupe hold across processes.
The schema is owned by Alembic migrations (``bot/migrations``), applied by :meth:`Store.migrate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import AsyncIterator, Collection, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.schema import SchemaItem

from bot.model import (
    CUSTOMER_FACING,
    Action,
    AskDetails,
    Conversation,
    ConversationState,
    Decision,
    Details,
    Handoff,
    Hold,
    LoopIn,
    Message,
    OpenHandoff,
    Person,
    PriorContact,
    Reply,
    Role,
    Severity,
)

metadata = sa.MetaData()
Stamp = sa.DateTime(timezone=True)



def _of_conversation(name: str, *columns: SchemaItem) -> sa.Table:
    """A table whose rows belong to one conversation: an integer id and an indexed conversation_id."""
    return sa.Table(
        name, metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(36), sa.ForeignKey("conversations.id"), nullable=False, index=True),
        *columns,
    )


conversations = sa.Table(
    "conversations", metadata,
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
    sa.Column("customer_timezone", sa.String(64)),
    sa.Column("awaiting", sa.String(16)),
    sa.Column("asked", sa.JSON, nullable=False, server_default="[]"),
    sa.Column("last_reply", sa.Text),
    sa.Column("card_channel", sa.String(64)),
    sa.Column("card_ts", sa.String(64)),
    sa.Column("brief", sa.JSON),
    sa.Column("sla_due", Stamp, index=True),
    sa.Column("sla_route", sa.String(64)),
    sa.Column("resolved_by", sa.String(64)),
    sa.Column("csat", sa.Integer),
    sa.Column("started_at", Stamp, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
    sa.UniqueConstraint("platform", "workspace", "channel", "thread", name="uq_conversation_thread"),
    sa.Index("ix_conversations_customer", "platform", "customer_id", "started_at"),
    sa.Index("ix_conversations_started", "started_at"),
)

messages = _of_conversation(
    "messages",
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("author_id", sa.String(64), nullable=False),
    sa.Column("author_name", sa.String(256)),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("event_id", sa.String(128)),
    sa.Column("at", Stamp, nullable=False),
)

decisions = _of_conversation(
    "decisions",
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

transitions = _of_conversation(
    "transitions",
    sa.Column("from_state", sa.String(16)),
    sa.Column("to_state", sa.String(16), nullable=False),
    sa.Column("cause", sa.String(256), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("at", Stamp, nullable=False),
)

outbox = _of_conversation(
    "outbox",
    sa.Column("decision_id", sa.Integer, sa.ForeignKey("decisions.id")),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("key", sa.String(160), nullable=False, unique=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("not_before", Stamp, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("sent_at", Stamp),
    sa.Column("result", sa.JSON),
    sa.Column("maybe_posted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_outbox_due", "status", "not_before"),
)

loop_ins = _of_conversation(
    "loop_ins",
    sa.Column("route", sa.String(64), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("at", Stamp, nullable=False),
    sa.UniqueConstraint("conversation_id", "route", name="uq_loop_in_route"),
)

drafts = _of_conversation(
    "drafts",
    sa.Column("intent", sa.String(64), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("route", sa.String(64)),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("citations", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("decided_by", sa.String(64)),
    sa.Column("decided_at", Stamp),
    sa.Column("final_text", sa.Text),
    sa.Column("edit_ratio", sa.Float),
    sa.Column("reason", sa.String(128)),
    sa.Column("final_route", sa.String(64)),
    sa.Index("ix_drafts_intent", "intent", "decided_at"),
)
"""The bot's answers that a person judged before (``draft``) or instead of (``shadow``) sending:
``pending`` until staff approve it (``approved``), send it changed (``edited``, with the edit ratio),
reject it (``rejected``, with the reason) or, in shadow mode, answer the customer themselves
(``answered``, with the edit ratio between the bot's would-be answer and theirs). ``route`` is where the
bot sent the conversation, ``final_route`` where it was when a person decided."""

reviews = _of_conversation(
    "reviews",
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("intent", sa.String(64), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("article", sa.String(512)),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("tag", sa.String(64)),
    sa.Column("note", sa.Text),
    sa.Column("tagged_by", sa.String(64)),
    sa.Column("tagged_at", Stamp),
    sa.Index("ix_reviews_intent", "intent", "tagged_at"),
)
"""Decisions sampled for the QA review queue (why: ``reason``), and the tag a person gave each."""

autonomy_changes = sa.Table(
    "autonomy_changes", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("intent", sa.String(64), nullable=False, index=True),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("previous", sa.String(16), nullable=False),
    sa.Column("by", sa.String(64), nullable=False),
    sa.Column("why", sa.Text, nullable=False),
    sa.Column("figures", sa.JSON, nullable=False),
    sa.Column("at", Stamp, nullable=False),
)
"""Every change of an intent's mode, with the figures it was made on and who made or confirmed it."""

digests = sa.Table(
    "digests", metadata,
    sa.Column("week", sa.String(16), primary_key=True),
    sa.Column("channel", sa.String(64), nullable=False),
    sa.Column("claimed_by", sa.String(64), nullable=False),
    sa.Column("claimed_at", Stamp, nullable=False),
    sa.Column("posted_at", Stamp),
    sa.Column("ts", sa.String(64)),
)
"""One row per week whose weekly digest a process took on (bot/digest.py): inserted if absent before posting,
``posted_at`` once it is in the leads' channel."""

llm_calls = sa.Table(
    "llm_calls", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String(36), sa.ForeignKey("conversations.id"), index=True),
    sa.Column("use", sa.String(32), nullable=False),
    sa.Column("prompt", sa.String(64), nullable=False),
    sa.Column("prompt_hash", sa.String(64), nullable=False),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("prompt_tokens", sa.Integer, nullable=False),
    sa.Column("completion_tokens", sa.Integer, nullable=False),
    sa.Column("latency_ms", sa.Integer, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("output", sa.JSON),
    sa.Column("at", Stamp, nullable=False),
)
"""Every language-model call: which prompt (by content hash), which model, tokens, latency, and output."""

cursors = sa.Table(
    "cursors", metadata,
    sa.Column("platform", sa.String(32), primary_key=True),
    sa.Column("place", sa.String(64), primary_key=True),
    sa.Column("last_seen", sa.BigInteger, nullable=False),
    sa.Column("at", Stamp, nullable=False),
)
"""The last message seen per place (a Discord channel or thread), so missed messages can be fetched."""

inbox = sa.Table(
    "inbox", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("platform", sa.String(32), nullable=False),
    sa.Column("event_id", sa.String(128), nullable=False),
    sa.Column("received_at", Stamp, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False, server_default="message"),
    sa.Column("payload", sa.JSON),
    sa.Column("thread_key", sa.String(256)),
    sa.Column("seq", sa.String(40), nullable=False, server_default=""),
    sa.Column("status", sa.String(16), nullable=False, server_default="done"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text),
    sa.Column("not_before", Stamp),
    sa.Column("done_at", Stamp),
    sa.UniqueConstraint("platform", "event_id", name="uq_inbox_event"),
    sa.Index("ix_inbox_pending", "status", "id"),
    sa.Index("ix_inbox_thread", "thread_key", "status", "seq", "id"),
)
"""Every inbound event, stored before the platform is acknowledged: pending until a worker has handled
it (or given up on it: ``failed``, kept with its error and payload), ``done`` after."""

_INBOX_ID = sa.bindparam("inbox_id", type_=sa.Integer)
def _before(a: sa.FromClause, b: sa.FromClause) -> sa.ColumnElement[bool]:
    """Row ``a`` comes before row ``b`` of the same thread: by the platform's order (``seq``: Slack's ts,
    Discord's snowflake), then by arrival."""
    return sa.or_(a.c.seq < b.c.seq, sa.and_(a.c.seq == b.c.seq, a.c.id < b.c.id))


_earlier = inbox.alias("earlier")
_me = inbox.alias("me")
_EARLIER = sa.select(_earlier.c.id).where(
    (_me.c.id == _INBOX_ID) & (_earlier.c.thread_key == _me.c.thread_key) & (_earlier.c.status == "pending")
    & _before(_earlier, _me)).limit(1)
"""An earlier pending row of the same thread: the row at hand must wait for it."""
_later = inbox.alias("later")
_TAKE = sa.select(
    inbox.c.thread_key,
    sa.select(_earlier.c.id).where((_earlier.c.thread_key == inbox.c.thread_key) & (_earlier.c.status == "pending")
                                   & _before(_earlier, inbox)).limit(1).scalar_subquery(),
    sa.select(_later.c.id).where((_later.c.thread_key == inbox.c.thread_key) & (_later.c.status == "pending")
                                 & _before(inbox, _later)).order_by(_later.c.seq, _later.c.id).limit(1)
    .scalar_subquery(),
).where((inbox.c.id == _INBOX_ID) & (inbox.c.status == "pending"))
"""An inbox row if it is pending, with the ids of the pending rows of its thread just before and after it."""
_TAKE_FOR_UPDATE = _TAKE.with_for_update(of=inbox, skip_locked=True)


def _inbound(row: Any) -> Inbound:
    return Inbound(id=row["id"], platform=row["platform"], event_id=row["event_id"], kind=row["kind"],
                   payload=dict(row["payload"] or {}), thread_key=row["thread_key"] or "", attempts=row["attempts"])


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
    dbapi_connection.isolation_level = None  # the driver's own BEGIN off: _sqlite_begin says which


def _sqlite_begin(conn: sa.Connection) -> None:
    """Every transaction takes SQLite's write lock when it begins: one that read first and wrote later
    would fail ("database is locked") when another connection wrote in between, instead of waiting."""
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_engine(url: str, *, echo: bool) -> AsyncEngine:
    engine = create_async_engine(url, echo=echo, pool_size=1, max_overflow=0, pool_timeout=60,
                                 connect_args={"timeout": 30})
    sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    sa.event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


URGENT_RUN = 8
"""At most this many urgent holders of SQLite's connection in a row while a turn waits for it."""


class _Gate:
    """SQLite's one connection, handed out in order, except that urgent work (storing an event before
    it is acknowledged, a health check) goes before the turns waiting for it."""

    def __init__(self) -> None:
        self._busy = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._normal: deque[asyncio.Future[None]] = deque()
        self._run = 0
        """Urgent holders handed the connection in a row while others waited."""

    @contextlib.asynccontextmanager
    async def hold(self, *, urgent: bool = False) -> AsyncIterator[None]:
        if self._busy:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            queue = self._urgent if urgent else self._normal
            queue.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._release()  # handed over just as we were cancelled: pass it on
                else:
                    queue.remove(waiter)
                raise
        else:
            self._busy = True
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        # urgent work goes first, but never more than URGENT_RUN times in a row while a turn waits: a steady
        # stream of events to store would otherwise keep every worker waiting for as long as it lasts
        order = (self._normal, self._urgent) if self._run >= URGENT_RUN else (self._urgent, self._normal)
        for queue in order:
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    self._run = self._run + 1 if queue is self._urgent else 0
                    waiter.set_result(None)  # the next holder; still busy
                    return
        self._busy, self._run = False, 0


def _now() -> datetime:
    return datetime.now(UTC)


def _outbox_row(conversation_id: str, action: Action, key: str, decision_id: int | None = None) -> dict[str, Any]:
    """An outbox row for ``action``: pending (or ``held``, never sent, for what the guard stopped)."""
    held = action.problems if isinstance(action, Hold) else None
    return {"conversation_id": conversation_id, "decision_id": decision_id, "kind": action.kind,
            "payload": action.model_dump(mode="json"), "key": key[:160],
            "status": "pending" if held is None else "held", "attempts": 0, "not_before": _now(), "created_at": _now(),
            "last_error": "; ".join(held) if held is not None else None}


def _insert(conn: AsyncConnection, table: sa.Table) -> Any:
    """The dialect's INSERT, which knows ``ON CONFLICT`` (SQLite and PostgreSQL both do)."""
    return (postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


@dataclass(frozen=True)
class Card:
    """Where a handoff card was posted, and the SLA timer it starts."""

    conversation_id: str
    channel: str
    ts: str
    sla_route: str | None
    sla_due: datetime | None


@dataclass(frozen=True)
class Taken:
    """An inbox row locked for its turn."""

    following: int | None
    """The next pending row of its thread, as it stood when this one was taken."""


@dataclass(frozen=True)
class Inbound:
    """One inbox row: an event as the platform sent it (``kind`` says how to read ``payload``)."""

    id: int
    platform: str
    event_id: str
    kind: str
    payload: dict[str, Any]
    thread_key: str
    attempts: int = 0


def thread_key(platform: str, workspace: str, channel: str, thread: str) -> str:
    """What orders an inbox: the messages of one thread are handled one at a time, in arrival order."""
    return f"{platform}:{workspace}:{channel}:{thread}"[:256]


def _of_platforms(platforms: Collection[str] | None) -> sa.ColumnElement[bool]:
    """Outbox rows of conversations on ``platforms`` (all rows when ``None``)."""
    if platforms is None:
        return sa.true()
    return outbox.c.conversation_id.in_(sa.select(conversations.c.id)
                                        .where(conversations.c.platform.in_(sorted(platforms))))


class Store:
    """The one way Baton reads and writes its database. Safe to share across tasks."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        if make_url(url).get_backend_name() == "sqlite":
            # SQLite has one writer at a time. One pooled connection makes tasks queue for it in
            # order instead of failing with "database is locked" under load; WAL lets readers of
            # other processes (``migrate``, a second tool) work beside it. Storing an event goes
            # first in the queue for that connection: an acknowledgement waits for one turn at most.
            self.engine: AsyncEngine = _sqlite_engine(url, echo=echo)
            self._gate: _Gate | None = _Gate()
        else:
            self.engine = create_async_engine(url, echo=echo, pool_size=10, max_overflow=10, pool_timeout=10,
                                              connect_args={"timeout": 5, "command_timeout": 30})
            self._gate = None
        self.postgres = self.engine.dialect.name == "postgresql"
        self._current: ContextVar[AsyncConnection | None] = ContextVar(f"baton-store-{id(self)}", default=None)

    @property
    def in_transaction(self) -> bool:
        """Whether this task is inside a :meth:`transaction` block (whose one connection it must share)."""
        return self._current.get() is not None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction for everything the store does inside this block (in this task): it all
        commits together or not at all. Nested blocks join the outer one."""
        current = self._current.get()
        if current is not None:
            yield current
            return
        async with self._begin() as conn:
            token = self._current.set(conn)
            try:
                yield conn
            finally:
                self._current.reset(token)

    @contextlib.asynccontextmanager
    async def _begin(self, *, urgent: bool = False) -> AsyncIterator[AsyncConnection]:
        """The transaction of the enclosing :meth:`transaction` block, or a new one of its own."""
        current = self._current.get()
        if current is not None:
            yield current
            return
        async with self._gate.hold(urgent=urgent) if self._gate is not None else contextlib.nullcontext():
            async with self.engine.begin() as conn:
                yield conn

    async def ping(self) -> None:
        """One round trip to the database (readiness): raises when it cannot answer."""
        async with self._begin(urgent=True) as conn:
            await conn.execute(sa.text("SELECT 1"))

    @staticmethod
    def describe(url: str) -> str:
        """The URL with any password masked, for logs and messages."""
        return make_url(url).render_as_string(hide_password=True)

    async def close(self) -> None:
        await self.engine.dispose()

    async def migrate(self) -> None:
        """Create or upgrade the schema to the newest migration (on PostgreSQL under an advisory lock, so
        that processes starting together on an empty database do not race)."""
        from bot import database

        await database.upgrade(self.engine)

    # ---- inbox ----

    async def receive(self, platform: str, event_id: str, *, kind: str, payload: dict[str, Any],
                      thread: str, seq: str = "") -> int | None:
        """Store an inbound event, pending, in one short transaction; its id, or ``None`` for a duplicate
        (a retry, or the same message under another event type). ``seq`` orders the thread's messages as
        the platform does. Raises when the database cannot take it: the platform must then not be
        acknowledged."""
        async with self._begin(urgent=True) as conn:
            statement = _insert(conn, inbox).values(
                platform=platform, event_id=event_id[:128], received_at=_now(), kind=kind, payload=payload,
                thread_key=thread, seq=seq[:40], status="pending", attempts=0,
            ).on_conflict_do_nothing().returning(inbox.c.id)
            return (await conn.execute(statement)).scalar_one_or_none()

    async def take_inbound(self, inbound_id: int) -> Taken | None:
        """Inside :meth:`transaction`: lock a pending inbox row for this turn, if it is the next of its
        thread and no other worker holds it (``None`` otherwise). The lock is the lease: it ends with the
        transaction, so a worker that dies leaves the row pending for the next one."""
        conn = self._current.get()
        assert conn is not None, "take_inbound runs inside Store.transaction()"
        query = _TAKE_FOR_UPDATE if self.postgres else _TAKE
        row = (await conn.execute(query, {"inbox_id": inbound_id})).first()
        if row is None:
            return None
        _key, earlier, following = row
        if earlier is not None and self.postgres:
            # Another process may be working on the earlier message right now: wait for its turn to
            # commit (its row lock), then look again, rather than leave this one for the poller.
            await conn.execute(sa.select(inbox.c.id).where(inbox.c.id == earlier).with_for_update())
            earlier = (await conn.execute(_EARLIER, {"inbox_id": inbound_id})).scalar_one_or_none()
        # A later message stored before this one was taken may have been left by its worker (this one
        # was pending): whoever finishes this turn starts it. One stored later waits for this turn's lock.
        return Taken(following=following) if earlier is None else None

    async def finish_inbound(self, inbound_id: int, *, status: str = "done") -> None:
        async with self._begin() as conn:
            await conn.execute(inbox.update().where(inbox.c.id == inbound_id)
                               .values(status=status, done_at=_now(), payload=None if status == "done" else
                                       inbox.c.payload))

    async def inbound_failed(self, inbound_id: int, error: str, *, give_up_after: int = 5) -> bool:
        """Count a failed attempt; after ``give_up_after`` the row is ``failed`` (kept, with its payload,
        for an operator) so that it stops holding back its thread. True when it gave up."""
        async with self._begin() as conn:
            attempts = (await conn.execute(
                inbox.update().where((inbox.c.id == inbound_id) & (inbox.c.status == "pending"))
                .values(attempts=inbox.c.attempts + 1, last_error=error[:2000],
                        not_before=_now() + timedelta(seconds=2))
                .returning(inbox.c.attempts))).scalar_one_or_none()
            if attempts is not None and attempts >= give_up_after:
                await conn.execute(inbox.update().where(inbox.c.id == inbound_id)
                                   .values(status="failed", done_at=_now()))
                return True
        return False

    async def pending_inbound(self, *, received_before: datetime | None = None, limit: int = 100,
                              ids: Sequence[int] | None = None) -> list[Inbound]:
        """Pending rows that are due, the first of each thread only (the next one waits its turn), oldest
        first: what a worker that restarted, or whose colleague died, picks up."""
        now = _now()
        earlier = inbox.alias("earlier")
        blocked = sa.exists().where((earlier.c.thread_key == inbox.c.thread_key) & (earlier.c.status == "pending")
                                    & _before(earlier, inbox))
        query = sa.select(inbox).where((inbox.c.status == "pending") & ~blocked
                                       & (inbox.c.not_before.is_(None) | (inbox.c.not_before <= now)))
        if received_before is not None:
            query = query.where(inbox.c.received_at <= received_before)
        if ids is not None:
            query = query.where(inbox.c.id.in_(ids))
        async with self._begin() as conn:
            rows = (await conn.execute(query.order_by(inbox.c.id).limit(limit))).mappings().all()
        return [_inbound(r) for r in rows]

    async def received(self, platform: str, event_id: str) -> bool:
        """Whether an event is in the inbox (in any state)."""
        async with self._begin() as conn:
            return (await conn.execute(sa.select(inbox.c.id).where(
                (inbox.c.platform == platform) & (inbox.c.event_id == event_id)))).first() is not None

    # ---- conversations ----

    async def conversation_for(self, message: Message) -> tuple[Conversation, bool]:
        """The conversation ``message`` belongs to (by its thread), opening one if needed.

        Returns ``(conversation, created)``. Two processes racing to open the same thread agree on
        one row: the unique thread key decides, and the loser reads the winner's row.
        """
        thread = message.thread or message.event_id
        key = (conversations.c.platform == message.platform) & (conversations.c.workspace == message.workspace) \
            & (conversations.c.channel == message.channel) & (conversations.c.thread == thread)
        async with self._begin() as conn:
            query = sa.select(conversations).where(key)
            if self.postgres:
                query = query.with_for_update()  # staff actions wait for this turn, and it for them
            row = (await conn.execute(query)).mappings().first()
            if row is not None:
                return self._conversation(row), False
            new_id = str(uuid.uuid4())
            created = (await conn.execute(_insert(conn, conversations).values(
                id=new_id, platform=message.platform, workspace=message.workspace, channel=message.channel,
                thread=thread, customer_id=message.author.id, customer_name=message.author.name,
                organisation=message.author.organisation, customer_timezone=message.author.timezone,
                state=ConversationState.open.value, details={}, asked=[], started_at=message.at,
                updated_at=message.at,
            ).on_conflict_do_nothing().returning(*conversations.c))).mappings().first()
            if created is not None:
                await conn.execute(transitions.insert().values(
                    conversation_id=new_id, from_state=None, to_state=ConversationState.open.value,
                    cause="first customer message", actor=message.author.id, at=_now(),
                ))
                return self._conversation(created), True
            row = (await conn.execute(sa.select(conversations).where(key))).mappings().one()
        return self._conversation(row), False

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        async with self._begin() as conn:
            row = (await conn.execute(
                sa.select(conversations).where(conversations.c.id == conversation_id))).mappings().first()
        return self._conversation(row) if row is not None else None

    async def prior_contacts(self, platform: str, customer_id: str, *, since: datetime,
                             exclude: str | None = None, limit: int = 50) -> list[PriorContact]:
        """The customer's latest conversations started since ``since`` (for the repeat-contact rule),
        oldest first; at most ``limit`` of them, so a very chatty customer costs no more than others."""
        query = sa.select(conversations.c.id, conversations.c.intent, conversations.c.state,
                          conversations.c.started_at).where(
            (conversations.c.platform == platform) & (conversations.c.customer_id == customer_id)
            & (conversations.c.started_at >= since))
        if exclude is not None:
            query = query.where(conversations.c.id != exclude)
        async with self._begin() as conn:
            rows = (await conn.execute(query.order_by(conversations.c.started_at.desc()).limit(limit))).all()
        rows = rows[::-1]
        return [PriorContact(conversation_id=r.id, intent=r.intent, state=ConversationState(r.state),
                             started_at=_utc(r.started_at)) for r in rows]

    async def transition(self, conversation_id: str, to: ConversationState, *, cause: str, actor: str,
                         conn: AsyncConnection | None = None) -> None:
        """Move a conversation to ``to``, recording who or what caused it."""
        async def run(c: AsyncConnection) -> None:
            current = (await c.execute(sa.select(conversations.c.state)
                                       .where(conversations.c.id == conversation_id))).scalar_one()
            if current == to.value:
                return
            await c.execute(conversations.update().where(conversations.c.id == conversation_id)
                            .values(state=to.value, updated_at=_now()))
            await c.execute(transitions.insert().values(conversation_id=conversation_id, from_state=current,
                                                        to_state=to.value, cause=cause, actor=actor, at=_now()))
        if conn is not None:
            await run(conn)
        else:
            async with self._begin() as c:
                await run(c)

    async def transitions_of(self, conversation_id: str) -> list[dict[str, Any]]:
        async with self._begin() as conn:
            rows = (await conn.execute(sa.select(transitions).where(transitions.c.conversation_id == conversation_id)
                                       .order_by(transitions.c.id))).mappings().all()
        return [dict(r) for r in rows]

    async def claim(self, conversation_id: str, who: str) -> tuple[bool, str | None]:
        """First writer wins: one conditional update. Returns ``(won, owner)``."""
        async with self._begin() as conn:
            before = (await conn.execute(sa.select(conversations.c.state)
                                         .where(conversations.c.id == conversation_id))).scalar_one_or_none()
            result = await conn.execute(
                conversations.update()
                .where((conversations.c.id == conversation_id) & conversations.c.claimed_by.is_(None)
                       & (conversations.c.state != ConversationState.resolved.value))
                .values(claimed_by=who, state=ConversationState.claimed.value, sla_due=None, updated_at=_now()))
            if result.rowcount == 1:
                await conn.execute(transitions.insert().values(
                    conversation_id=conversation_id, from_state=before,
                    to_state=ConversationState.claimed.value, cause="claimed", actor=who, at=_now()))
                return True, who
            owner = (await conn.execute(sa.select(conversations.c.claimed_by)
                                        .where(conversations.c.id == conversation_id))).scalar_one_or_none()
        return False, owner

    # ---- messages and decisions ----

    async def save_turn(self, conversation: Conversation, message: Message, decision: Decision,
                        actions: Sequence[Action], *, policy_version: str) -> tuple[ConversationState, list[int]]:
        """Record a customer message, the decision on it and its actions, in one transaction.

        Either all of it is stored or none of it, so a crash never leaves a decision whose actions
        were lost. Returns the conversation's state after the turn and the new outbox rows' ids.
        """
        state = conversation.state
        inputs = {"text": message.text, "event_id": message.event_id, "state": conversation.state.value,
                  "organisation": message.author.organisation}
        said = [a for a in actions if a.kind in CUSTOMER_FACING]
        rows = [{"conversation_id": conversation.id, "role": message.author.role.value, "author_id": message.author.id,
                 "author_name": message.author.name, "text": message.text, "event_id": message.event_id,
                 "at": message.at}]
        for action in said:  # what the bot says, kept with the customer's words, in one statement
            assert isinstance(action, Reply | AskDetails)
            rows.append({"conversation_id": conversation.id, "role": Role.bot.value, "author_id": "baton",
                         "author_name": "Baton", "text": action.text, "event_id": None, "at": message.at})
        async with self._begin() as conn:
            stored = (await conn.execute(messages.insert().values(rows)
                                         .returning(messages.c.id, messages.c.role))).all()
            message_id = next(row.id for row in stored if row.role == message.author.role.value)
            decision_id = (await conn.execute(decisions.insert().values(
                conversation_id=conversation.id, message_id=message_id, intent=decision.intent,
                escalate=decision.escalate, severity=decision.severity.name, route=decision.route,
                rules=list(decision.rules), inputs=inputs, output=decision.contract(),
                policy_version=policy_version, at=_now(),
            ).returning(decisions.c.id))).scalar_one()
            update: dict[str, Any] = {"updated_at": _now(), "details": decision.details.model_dump(),
                                      "awaiting": decision.awaiting,
                                      "asked": list(decision.missing) if decision.awaiting == "details" else []}
            for action in said:
                assert isinstance(action, Reply | AskDetails)
                update["last_reply"] = action.text
            if message.author.timezone:
                update["customer_timezone"] = message.author.timezone
            if conversation.intent is None or conversation.state is ConversationState.open:
                update["intent"] = decision.intent
            if conversation.severity is None or decision.severity > conversation.severity:
                update["severity"] = decision.severity.name
            if decision.route:
                update["route"] = decision.route
            for action in actions:
                if isinstance(action, OpenHandoff) and action.brief is not None:
                    update["brief"] = action.brief
            await conn.execute(conversations.update().where(conversations.c.id == conversation.id).values(**update))
            queued = [(await conn.execute(outbox.insert().values(
                **_outbox_row(conversation.id, action, f"{decision_id}:{index}:{action.kind}", decision_id))
                .returning(outbox.c.id))).scalar_one() for index, action in enumerate(actions)]
            if decision.escalate and state in (ConversationState.open, ConversationState.gathering):
                state = ConversationState.escalated
                await self.transition(conversation.id, state, conn=conn,
                                      cause="escalated: " + ", ".join(decision.rules)[:240], actor="baton")
            elif decision.awaiting and state is ConversationState.open:
                state = ConversationState.gathering
                what = ", ".join(decision.missing) if decision.missing else "confirmation of the details"
                await self.transition(conversation.id, state, conn=conn, cause="asking for " + what, actor="baton")
        return state, queued

    async def record_message(self, conversation_id: str, message: Message) -> None:
        """Keep a message that needs no decision (a staff reply in the customer's thread)."""
        async with self._begin() as conn:
            await conn.execute(messages.insert().values(
                conversation_id=conversation_id, role=message.author.role.value, author_id=message.author.id,
                author_name=message.author.name, text=message.text, event_id=message.event_id, at=message.at))

    async def transcript(self, conversation_id: str) -> list[dict[str, Any]]:
        """Every message of the conversation, oldest first: customer, staff and the bot's own."""
        async with self._begin() as conn:
            rows = (await conn.execute(sa.select(messages).where(messages.c.conversation_id == conversation_id)
                                       .order_by(messages.c.at, messages.c.id))).mappings().all()
        return [dict(r, at=_utc(r["at"])) for r in rows]

    async def held_actions(self, conversation_id: str | None = None) -> list[dict[str, Any]]:
        """Messages the pre-send guard stopped, for review."""
        query = sa.select(outbox).where(outbox.c.status == "held")
        if conversation_id is not None:
            query = query.where(outbox.c.conversation_id == conversation_id)
        async with self._begin() as conn:
            rows = (await conn.execute(query.order_by(outbox.c.id))).mappings().all()
        return [dict(r) for r in rows]

    async def decisions_of(self, conversation_id: str) -> list[dict[str, Any]]:
        async with self._begin() as conn:
            rows = (await conn.execute(sa.select(decisions).where(decisions.c.conversation_id == conversation_id)
                                       .order_by(decisions.c.id))).mappings().all()
        return [dict(r) for r in rows]

    # ---- outbox ----

    async def enqueue(self, conversation_id: str, actions: Sequence[Action], *, source: str) -> list[int]:
        """Write actions that no decision made (staff actions, timers) to the outbox, in order.

        ``source`` names what made them and must be unique per cause (it keys the rows), so a
        repeated cause (a retried interaction) cannot enqueue the same actions twice.
        """
        ids: list[int] = []
        async with self._begin() as conn:
            for index, action in enumerate(actions):
                new = (await conn.execute(_insert(conn, outbox).values(
                    **_outbox_row(conversation_id, action, f"{source}:{index}:{action.kind}"))
                    .on_conflict_do_nothing().returning(outbox.c.id))).scalar_one_or_none()
                if new is None:
                    return ids  # this cause was enqueued before
                ids.append(new)
        return ids

    async def take_due(self, limit: int = 50, *, lease: timedelta = timedelta(seconds=60),
                       now: datetime | None = None, platforms: Collection[str] | None = None) -> list[dict[str, Any]]:
        """Take pending actions whose time has come, for delivery.

        Per conversation, only the oldest pending action is due, so a conversation's messages are
        delivered in order and one that waits (a 429, a retry) holds back the ones behind it. Each
        row is taken with a compare-and-set on ``not_before`` that pushes it ``lease`` into the
        future: two workers (tasks or processes) never take the same row, and a row taken by a
        worker that then died becomes due again when the lease runs out. With ``platforms``, only the
        actions of those platforms' conversations are taken (a process that cannot reach Discord
        leaves Discord's conversations to one that can).
        """
        now = now or _now()
        earlier = outbox.alias("earlier")
        blocked = sa.exists().where((earlier.c.conversation_id == outbox.c.conversation_id)
                                    & (earlier.c.status == "pending") & (earlier.c.id < outbox.c.id))
        query = (sa.select(outbox).where((outbox.c.status == "pending") & (outbox.c.not_before <= now) & ~blocked
                                         & _of_platforms(platforms))
                 .order_by(outbox.c.id).limit(limit))
        if self.postgres:
            query = query.with_for_update(of=outbox, skip_locked=True)
        taken: list[dict[str, Any]] = []
        async with self._begin() as conn:
            rows = (await conn.execute(query)).mappings().all()
            for row in rows:
                # maybe_posted: from now on a post may exist even if no answer comes back.
                result = await conn.execute(
                    outbox.update().where((outbox.c.id == row["id"]) & (outbox.c.status == "pending")
                                          & (outbox.c.not_before == row["not_before"]))
                    .values(not_before=now + lease, maybe_posted=True))
                if result.rowcount == 1:
                    taken.append(dict(row))
        return taken

    async def take_rows(self, ids: Sequence[int], *, lease: timedelta) -> list[dict[str, Any]]:
        """Take rows just written (inside the turn's transaction) for delivery by the worker at hand, unless
        an earlier action of the conversation is still pending (then the courier delivers them in order)."""
        if not ids:
            return []
        earlier = outbox.alias("earlier")
        waiting = sa.exists().where((earlier.c.conversation_id == outbox.c.conversation_id)
                                    & (earlier.c.status == "pending") & (earlier.c.id < min(ids)))
        async with self._begin() as conn:
            rows = (await conn.execute(
                outbox.update().where(outbox.c.id.in_(ids) & (outbox.c.status == "pending") & ~waiting)
                .values(not_before=_now() + lease, maybe_posted=True).returning(*outbox.c))).mappings().all()
        # Never tried yet: nothing to look for before the first post.
        return sorted((dict(r, maybe_posted=False) for r in rows), key=lambda r: r["id"])

    async def release(self, ids: Sequence[int]) -> None:
        """Hand rows taken by :meth:`take_rows` but never tried back to the courier, at once."""
        if ids:
            async with self._begin() as conn:
                await conn.execute(outbox.update().where(outbox.c.id.in_(ids) & (outbox.c.status == "pending"))
                                   .values(not_before=_now(), maybe_posted=False))

    async def next_due(self, *, platforms: Collection[str] | None = None) -> datetime | None:
        """When the next pending action (taken or not) becomes due; ``None`` when there is none."""
        async with self._begin() as conn:
            value = (await conn.execute(sa.select(sa.func.min(outbox.c.not_before))
                                        .where((outbox.c.status == "pending") & _of_platforms(platforms)))
                     ).scalar_one_or_none()
        return _utc(value) if value is not None else None

    async def mark_sent(self, action_id: int, result: dict[str, Any] | None = None,
                        *, card: Card | None = None) -> bool:
        """Mark an action delivered, with what it produced (``card``: where a handoff card was posted and
        its SLA timer), in one transaction; False if it was already (so it is never sent twice)."""
        async with self._begin() as conn:
            done = await conn.execute(
                outbox.update().where((outbox.c.id == action_id) & (outbox.c.status == "pending"))
                .values(status="sent", sent_at=_now(), attempts=outbox.c.attempts + 1, result=result))
            if done.rowcount == 1 and card is not None:
                await conn.execute(conversations.update().where(conversations.c.id == card.conversation_id)
                                   .values(card_channel=card.channel, card_ts=card.ts))
                await conn.execute(conversations.update().where(
                    (conversations.c.id == card.conversation_id) & conversations.c.claimed_by.is_(None)
                    & (conversations.c.state == ConversationState.escalated.value))
                    .values(sla_due=card.sla_due, sla_route=card.sla_route))
        return done.rowcount == 1

    async def mark_sent_many(self, done: Sequence[tuple[int, dict[str, Any] | None, Card | None]]) -> None:
        """:meth:`mark_sent` for several rows, in one transaction."""
        async with self.transaction():
            for action_id, result, card in done:
                await self.mark_sent(action_id, result, card=card)

    async def mark_failed(self, action_id: int, error: str, *, retry_at: datetime | None,
                          posted: bool = True) -> None:
        """Record a failed attempt; ``retry_at=None`` gives up (status ``failed``, kept for review).
        ``posted=False``: the platform certainly did not act (a refusal, a rate limit, no connection), so
        the next attempt need not look for the post first."""
        values: dict[str, Any] = {"attempts": outbox.c.attempts + 1, "last_error": error[:2000]}
        if retry_at is None:
            values["status"] = "failed"
        else:
            values["not_before"] = retry_at
        if not posted:
            values["maybe_posted"] = False
        async with self._begin() as conn:
            await conn.execute(outbox.update().where(outbox.c.id == action_id).values(**values))

    async def outbox_of(self, conversation_id: str) -> list[dict[str, Any]]:
        async with self._begin() as conn:
            rows = (await conn.execute(sa.select(outbox).where(outbox.c.conversation_id == conversation_id)
                                       .order_by(outbox.c.id))).mappings().all()
        return [dict(r) for r in rows]

    # ---- handoffs ----

    async def find_conversation(self, platform: str, workspace: str, channel: str,
                                thread: str) -> Conversation | None:
        """The conversation of a thread, without opening one."""
        key = (conversations.c.platform == platform) & (conversations.c.workspace == workspace) \
            & (conversations.c.channel == channel) & (conversations.c.thread == thread)
        async with self._begin() as conn:
            row = (await conn.execute(sa.select(conversations).where(key))).mappings().first()
        return self._conversation(row) if row is not None else None

    async def handoff(self, conversation_id: str) -> Handoff | None:
        """The conversation's handoff (brief, internal card, SLA timer, loop-ins); ``None`` if it never had one."""
        found = await self.with_handoff(conversation_id)
        return found[1] if found is not None else None

    async def with_handoff(self, conversation_id: str) -> tuple[Conversation, Handoff | None] | None:
        """The conversation and its handoff, read together (what a delivery needs); ``None`` if no such one."""
        async with self._begin() as conn:
            row = (await conn.execute(sa.select(conversations)
                                      .where(conversations.c.id == conversation_id))).mappings().first()
            if row is None:
                return None
            conversation = self._conversation(row)
            if row["brief"] is None:
                return conversation, None
            looped = (await conn.execute(sa.select(loop_ins).where(loop_ins.c.conversation_id == conversation_id)
                                         .order_by(loop_ins.c.id))).mappings().all()
            draft = (await conn.execute(sa.select(drafts).where(drafts.c.conversation_id == conversation_id)
                                        .order_by(drafts.c.id.desc()).limit(1))).mappings().first()
        return conversation, Handoff(
            draft={k: draft[k] for k in ("id", "mode", "text", "status", "decided_by", "reason")} if draft else None,
            conversation=conversation, brief=row["brief"], card_channel=row["card_channel"],
            card_ts=row["card_ts"], sla_due=_utc(row["sla_due"]) if row["sla_due"] else None,
            sla_route=row["sla_route"], resolved_by=row["resolved_by"], csat=row["csat"],
            looped_in=tuple(LoopIn(route=r["route"], actor=r["actor"], at=_utc(r["at"])) for r in looped))

    async def overdue(self, now: datetime | None = None) -> list[Conversation]:
        """Unclaimed handoffs whose SLA timer has run out."""
        query = sa.select(conversations).where(
            (conversations.c.state == ConversationState.escalated.value) & conversations.c.sla_due.is_not(None)
            & (conversations.c.sla_due <= (now or _now()))).order_by(conversations.c.sla_due)
        async with self._begin() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [self._conversation(r) for r in rows]

    async def next_sla(self) -> datetime | None:
        async with self._begin() as conn:
            value = (await conn.execute(sa.select(sa.func.min(conversations.c.sla_due)).where(
                conversations.c.state == ConversationState.escalated.value))).scalar_one_or_none()
        return _utc(value) if value is not None else None

    async def escalate_sla(self, conversation_id: str, *, seen_due: datetime, route: str,
                           due: datetime | None, actions: Sequence[Action]) -> bool:
        """Move an overdue handoff up a route and enqueue its re-ping, once: a compare-and-set on the
        timer, so two workers never ping twice for the same lapse. ``due=None`` stops the timer."""
        async with self._begin() as conn:
            result = await conn.execute(conversations.update().where(
                (conversations.c.id == conversation_id) & (conversations.c.sla_due == seen_due)
                & (conversations.c.state == ConversationState.escalated.value))
                .values(sla_due=due, sla_route=route, route=route, updated_at=_now()))
            if result.rowcount != 1:
                return False
            await conn.execute(transitions.insert().values(
                conversation_id=conversation_id, from_state=ConversationState.escalated.value,
                to_state=ConversationState.escalated.value, cause=f"SLA passed: moved up to {route}",
                actor="baton", at=_now()))
            for index, action in enumerate(actions):
                await conn.execute(outbox.insert().values(
                    **_outbox_row(conversation_id, action, f"sla:{conversation_id}:{seen_due.isoformat()}:{index}")))
        return True

    async def move_route(self, conversation_id: str, *, from_route: str, to_route: str, actor: str,
                         due: datetime | None, actions: Sequence[Action], source: str) -> bool:
        """Hand a conversation to the next tier's route, once (a compare-and-set on the route): unclaimed
        again, its SLA timer restarted, who moved it and who owned it kept in the transitions."""
        async with self._begin() as conn:
            row = (await conn.execute(sa.select(conversations.c.state, conversations.c.claimed_by)
                                      .where(conversations.c.id == conversation_id))).first()
            if row is None or row.state == ConversationState.resolved.value:
                return False
            result = await conn.execute(conversations.update().where(
                (conversations.c.id == conversation_id) & (conversations.c.route == from_route))
                .values(route=to_route, sla_route=to_route, sla_due=due, claimed_by=None,
                        state=ConversationState.escalated.value, updated_at=_now()))
            if result.rowcount != 1:
                return False
            owner = f" (owned by {row.claimed_by})" if row.claimed_by else ""
            await conn.execute(transitions.insert().values(
                conversation_id=conversation_id, from_state=row.state, to_state=ConversationState.escalated.value,
                cause=f"escalated from {from_route} to {to_route}{owner}"[:256], actor=actor, at=_now()))
            for index, action in enumerate(actions):
                await conn.execute(outbox.insert().values(**_outbox_row(conversation_id, action, f"{source}:{index}")))
        return True

    # ---- drafts and autonomy ----

    async def add_draft(self, conversation_id: str, *, intent: str, mode: str, text: str,
                        citations: Sequence[str] = (), route: str | None = None) -> int:
        async with self._begin() as conn:
            return int((await conn.execute(drafts.insert().values(
                conversation_id=conversation_id, intent=intent, mode=mode, text=text, citations=list(citations),
                route=route,
                status="pending", created_at=_now()).returning(drafts.c.id))).scalar_one())

    async def pending_draft(self, conversation_id: str) -> dict[str, Any] | None:
        """The conversation's newest draft still waiting for a person, if any."""
        async with self._begin() as conn:
            row = (await conn.execute(sa.select(drafts).where(
                (drafts.c.conversation_id == conversation_id) & (drafts.c.status == "pending"))
                .order_by(drafts.c.id.desc()).limit(1))).mappings().first()
        return dict(row) if row else None

    async def decide_draft(self, draft_id: int, *, status: str, by: str, final_text: str | None = None,
                           edit_ratio: float | None = None, reason: str | None = None) -> bool:
        """Record what a person did with a pending draft; False if someone already did (first wins)."""
        async with self._begin() as conn:
            where = sa.select(conversations.c.route).where(conversations.c.id == drafts.c.conversation_id)
            done = await conn.execute(drafts.update().where((drafts.c.id == draft_id) & (drafts.c.status == "pending"))
                                      .values(status=status, decided_by=by, decided_at=_now(), final_text=final_text,
                                              edit_ratio=edit_ratio, reason=reason,
                                              final_route=where.scalar_subquery()))
        return done.rowcount == 1

    async def reviewed_drafts(self, intent: str, *, window: int, since: datetime | None = None) -> list[dict[str, Any]]:
        """The intent's last ``window`` drafts a person judged (after ``since``: the intent's last change of
        mode, so a new mode is judged on its own record), newest first."""
        query = sa.select(drafts).where((drafts.c.intent == intent) & drafts.c.status.not_in(("pending", "superseded")))
        if since is not None:
            query = query.where(drafts.c.decided_at > since)
        async with self._begin() as conn:
            rows = (await conn.execute(query.order_by(drafts.c.decided_at.desc(), drafts.c.id.desc())
                                       .limit(window))).mappings().all()
        return [dict(r) for r in rows]

    async def tagged_answers(self, intent: str, *, window: int, since: datetime | None = None) -> list[dict[str, Any]]:
        """The intent's last ``window`` answers sent on their own that a reviewer tagged (after ``since``),
        newest first."""
        query = sa.select(reviews).where((reviews.c.intent == intent) & (reviews.c.reason == "auto_answer")
                                         & reviews.c.tag.is_not(None))
        if since is not None:
            query = query.where(reviews.c.tagged_at > since)
        async with self._begin() as conn:
            rows = (await conn.execute(query.order_by(reviews.c.tagged_at.desc(), reviews.c.id.desc())
                                       .limit(window))).mappings().all()
        return [dict(r) for r in rows]

    async def claimed_by(self, user_id: str, *, limit: int) -> tuple[list[dict[str, Any]], int]:
        """The conversations ``user_id`` claimed that are not resolved, longest held first (at most ``limit``),
        and how many in all. ``since``: their latest claim, else the conversation's last change."""
        claimed_at = sa.select(sa.func.max(transitions.c.at)).where(
            (transitions.c.conversation_id == conversations.c.id)
            & (transitions.c.to_state == ConversationState.claimed.value) & (transitions.c.actor == user_id)
        ).scalar_subquery()
        since = sa.func.coalesce(claimed_at, conversations.c.updated_at).label("since")
        query = (sa.select(conversations.c.id, conversations.c.customer_id, conversations.c.customer_name,
                           conversations.c.organisation, conversations.c.intent, conversations.c.severity,
                           conversations.c.card_channel, conversations.c.card_ts, since,
                           sa.func.count().over().label("total"))
                 .where((conversations.c.claimed_by == user_id)
                        & (conversations.c.state != ConversationState.resolved.value))
                 .order_by(since, conversations.c.id).limit(limit))
        async with self._begin() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [dict(r) for r in rows], int(rows[0]["total"]) if rows else 0

    async def waiting_drafts(self, *, limit: int) -> tuple[list[dict[str, Any]], int]:
        """The drafts (``draft`` mode) waiting for approval, each conversation's newest, in conversations that
        are not resolved; the longest waiting first (at most ``limit``), and how many in all."""
        newest = sa.select(sa.func.max(drafts.c.id)).where(drafts.c.status == "pending") \
            .group_by(drafts.c.conversation_id)
        query = (sa.select(drafts.c.conversation_id, drafts.c.intent, drafts.c.text, drafts.c.created_at,
                           conversations.c.customer_id, conversations.c.customer_name, conversations.c.claimed_by,
                           conversations.c.card_channel, conversations.c.card_ts,
                           sa.func.count().over().label("total"))
                 .join(conversations, conversations.c.id == drafts.c.conversation_id)
                 .where(drafts.c.id.in_(newest) & (drafts.c.mode == "draft")
                        & (conversations.c.state != ConversationState.resolved.value))
                 .order_by(drafts.c.created_at, drafts.c.id).limit(limit))
        async with self._begin() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [dict(r) for r in rows], int(rows[0]["total"]) if rows else 0

    async def add_review(self, conversation_id: str, *, reason: str, intent: str, text: str,
                         article: str | None = None) -> int:
        async with self._begin() as conn:
            return int((await conn.execute(reviews.insert().values(
                conversation_id=conversation_id, reason=reason, intent=intent, text=text, article=article,
                created_at=_now()).returning(reviews.c.id))).scalar_one())

    async def review(self, review_id: int) -> dict[str, Any] | None:
        async with self._begin() as conn:
            row = (await conn.execute(sa.select(reviews).where(reviews.c.id == review_id))).mappings().first()
        return dict(row) if row else None

    async def tag_review(self, review_id: int, *, tag: str, by: str, note: str | None = None) -> bool:
        """Tag a review item; False if it was tagged already (the first tag stands)."""
        async with self._begin() as conn:
            done = await conn.execute(reviews.update().where((reviews.c.id == review_id) & reviews.c.tag.is_(None))
                                      .values(tag=tag, tagged_by=by, tagged_at=_now(), note=note))
        return done.rowcount == 1

    async def reviews_of(self, *, reason: str | None = None) -> list[dict[str, Any]]:
        """Review items, oldest first (of one reason, or all)."""
        query = sa.select(reviews).order_by(reviews.c.id)
        if reason is not None:
            query = query.where(reviews.c.reason == reason)
        async with self._begin() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [dict(r) for r in rows]

    async def record_autonomy(self, intent: str, *, mode: str, previous: str, by: str, why: str,
                              figures: dict[str, Any]) -> None:
        async with self._begin() as conn:
            await conn.execute(autonomy_changes.insert().values(intent=intent, mode=mode, previous=previous, by=by,
                                                                why=why, figures=figures, at=_now()))

    async def autonomy_changes(self, intent: str | None = None) -> list[dict[str, Any]]:
        """Every change of mode, oldest first (of one intent, or of all)."""
        query = sa.select(autonomy_changes).order_by(autonomy_changes.c.id)
        if intent is not None:
            query = query.where(autonomy_changes.c.intent == intent)
        async with self._begin() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [dict(r, at=_utc(r["at"])) for r in rows]

    async def loop_in(self, conversation_id: str, route: str, actor: str) -> bool:
        """Record that ``actor`` looped ``route`` in; False if that route was already in (the schema's
        unique key decides, so simultaneous clicks in any number of processes record one)."""
        async with self._begin() as conn:
            done = await conn.execute(_insert(conn, loop_ins).values(
                conversation_id=conversation_id, route=route, actor=actor, at=_now()).on_conflict_do_nothing())
        return done.rowcount == 1

    async def resolve(self, conversation_id: str, actor: str, *, awaiting_csat: bool) -> bool:
        """Close a conversation; False if it was already resolved."""
        async with self._begin() as conn:
            before = (await conn.execute(sa.select(conversations.c.state)
                                         .where(conversations.c.id == conversation_id))).scalar_one_or_none()
            result = await conn.execute(conversations.update().where(
                (conversations.c.id == conversation_id)
                & (conversations.c.state != ConversationState.resolved.value))
                .values(state=ConversationState.resolved.value, resolved_by=actor, sla_due=None,
                        awaiting="csat" if awaiting_csat else None, asked=[], updated_at=_now()))
            if result.rowcount != 1:
                return False
            await conn.execute(transitions.insert().values(
                conversation_id=conversation_id, from_state=before, to_state=ConversationState.resolved.value,
                cause="resolved", actor=actor, at=_now()))
            await conn.execute(drafts.update().where(  # a draft still waiting can no longer be sent
                (drafts.c.conversation_id == conversation_id) & (drafts.c.status == "pending"))
                .values(status="superseded", decided_at=_now()))
        return True

    async def reopen(self, conversation_id: str, *, actor: str) -> None:
        """A resolved conversation the customer writes in again: open, with no owner, card or timer."""
        async with self._begin() as conn:
            await conn.execute(conversations.update().where(conversations.c.id == conversation_id).values(
                claimed_by=None, resolved_by=None, brief=None, card_channel=None, card_ts=None, sla_due=None,
                sla_route=None, awaiting=None, asked=[], updated_at=_now()))
            await self.transition(conversation_id, ConversationState.open, cause="customer wrote again",
                                  actor=actor, conn=conn)

    async def record_csat(self, conversation_id: str, score: int) -> None:
        async with self._begin() as conn:
            await conn.execute(conversations.update().where(conversations.c.id == conversation_id)
                               .values(csat=score, awaiting=None, updated_at=_now()))

    async def recent_conversations(self, platform: str, *, since: datetime) -> list[Conversation]:
        """The platform's conversations that are not resolved, or were active since ``since``."""
        async with self._begin() as conn:
            rows = (await conn.execute(sa.select(conversations).where(
                (conversations.c.platform == platform)
                & ((conversations.c.state != ConversationState.resolved.value) | (conversations.c.updated_at >= since)))
                .order_by(conversations.c.updated_at))).mappings().all()
        return [self._conversation(r) for r in rows]

    # ---- language-model calls ----

    async def record_llm_call(self, **values: Any) -> None:
        async with self._begin() as conn:
            await conn.execute(llm_calls.insert().values(at=_now(), **values))

    async def llm_tokens(self, conversation_id: str) -> int:
        """Tokens spent on the model for one conversation so far (prompt and completion)."""
        async with self._begin() as conn:
            spent = (await conn.execute(sa.select(sa.func.coalesce(sa.func.sum(
                llm_calls.c.prompt_tokens + llm_calls.c.completion_tokens), 0))
                .where(llm_calls.c.conversation_id == conversation_id))).scalar_one()
        return int(spent)

    async def llm_calls_of(self, conversation_id: str | None = None, *, use: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(llm_calls).order_by(llm_calls.c.id)
        if conversation_id is not None:
            query = query.where(llm_calls.c.conversation_id == conversation_id)
        if use is not None:
            query = query.where(llm_calls.c.use == use)
        async with self._begin() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings().all()]

    # ---- cursors: the last message seen per place ----

    async def advance_cursor(self, platform: str, place: str, seen: int) -> None:
        """Remember ``seen`` as the last message seen in ``place``, unless a later one already is."""
        async with self._begin() as conn:
            insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
            statement = insert(cursors).values(platform=platform, place=place, last_seen=seen, at=_now())
            await conn.execute(statement.on_conflict_do_update(
                index_elements=[cursors.c.platform, cursors.c.place],
                set_={"last_seen": statement.excluded.last_seen, "at": statement.excluded.at},
                where=cursors.c.last_seen < statement.excluded.last_seen))

    async def cursors_of(self, platform: str) -> dict[str, int]:
        async with self._begin() as conn:
            rows = (await conn.execute(sa.select(cursors.c.place, cursors.c.last_seen)
                                       .where(cursors.c.platform == platform))).all()
        return {place: int(seen) for place, seen in rows}

    # ---- rows to models ----

    @staticmethod
    def _conversation(row: Any) -> Conversation:
        return Conversation(
            id=row["id"], platform=row["platform"], workspace=row["workspace"], channel=row["channel"],
            thread=row["thread"],
            customer=Person(id=row["customer_id"], name=row["customer_name"], role=Role.customer,
                            organisation=row["organisation"], timezone=row["customer_timezone"]),
            state=ConversationState(row["state"]), intent=row["intent"],
            severity=Severity[row["severity"]] if row["severity"] else None, route=row["route"],
            details=Details(**(row["details"] or {})), claimed_by=row["claimed_by"],
            awaiting=row["awaiting"], asked=tuple(row["asked"] or ()), last_reply=row["last_reply"],
            started_at=_utc(row["started_at"]), updated_at=_utc(row["updated_at"]),
        )
