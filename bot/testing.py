"""An in-memory platform that drives the whole bot, for tests (as errbot's test backend does).

:class:`MemoryPlatform` is a customer side and the staff side at once. What a customer writes is
stored in the inbox first and then worked on by the inbox (engine, store, one transaction per turn);
what the bot decides goes through the courier and reaches :meth:`MemoryPlatform.deliver`, which
records it as a chat platform would show it: replies in the customer's thread, and for staff a card
with its brief, its updates and its internal thread. Delivery can be told to fail (a rate limit, a
server error, a post whose answer is lost) to test that the courier delivers everything exactly once.

:class:`TestBot` owns an :class:`bot.app.Application` with one memory platform; :class:`Customer`
holds a conversation on it::

    async with TestBot.create(engine, store) as bot:
        customer = bot.customer(Person(id="U0DANA", name="Dana"))
        outcome = await customer.says("How do I connect my Outlook calendar?")
        assert customer.replies == [outcome.decision.reply]
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

from bot.app import Application
from bot.engine import Engine
from bot.handoff import Brief
from bot.inbox import Translated
from bot.model import (
    TO_CUSTOMER,
    AskDetails,
    AutonomyNotice,
    Conversation,
    ConversationState,
    Hold,
    Message,
    MirrorToInternal,
    Note,
    OpenHandoff,
    Person,
    Reply,
    ReviewItem,
    Role,
    StaffReply,
)
from bot.outbox import Parcel, RetryLater, Transient, Undeliverable
from bot.platform import Factory, Platform
from bot.service import ClaimResult, Outcome, Service, thread_of
from bot.settings import Settings
from bot.store import Inbound, Store

if TYPE_CHECKING:
    from bot.llm import LanguageModel

WORKSPACE = "T0VENDOR"
"""The company's own workspace (a Slack team id)."""
CUSTOMER_CHANNEL = "C0SHARED"
INTERNAL_CHANNEL = "C0INTERNAL"
REVIEW_CHANNEL = "C0REVIEW"
STAFF = Person(id="U0AGENT", name="Sam Agent", role=Role.staff)

Failure = Literal["rate_limited", "unreachable", "server_error", "lost", "refused"]
"""How a delivery fails: ``rate_limited`` (a 429 with Retry-After, nothing posted), ``unreachable`` (the
connection was refused: certainly not posted), ``server_error`` (a 5xx: nothing posted, but the courier
cannot know), ``lost`` (posted, then the answer was lost), ``refused`` (for good: unknown channel)."""


@dataclass(frozen=True)
class Post:
    """One message the platform shows, in a customer's thread or in a card's internal thread."""

    ts: str
    channel: str
    thread: str | None
    kind: str
    """The outbox action that made it: ``reply``, ``ask_details``, ``staff_reply`` (to the customer);
    ``note``, ``mirror``, ``raised`` (a handoff raised while open) in a card's thread."""
    text: str
    outbox_id: int
    author: str | None = None
    """A staff reply's author, as the customer sees it."""
    route: str | None = None
    """The route a note mentions (a loop-in, an SLA re-ping)."""
    actor: str | None = None
    """The staff member a note mentions."""


@dataclass
class StaffCard:
    """A handoff card in the internal channel, as staff see it after its latest update."""

    conversation_id: str
    channel: str
    ts: str
    outbox_id: int
    brief: Brief
    state: ConversationState
    claimed_by: str | None = None
    resolved_by: str | None = None
    looped_in: tuple[str, ...] = ()
    csat: int | None = None
    updates: int = 0
    """How many times the card was redrawn after it was posted."""
    thread: list[Post] = field(default_factory=list)
    """The internal thread under the card: the transcript, mirrored messages, notes."""

    def notes(self) -> list[str]:
        return [post.text for post in self.thread if post.kind == "note"]

    def mirrored(self) -> list[str]:
        return [post.text for post in self.thread if post.kind == "mirror"]


@dataclass(frozen=True)
class Attempt:
    """One call of :meth:`MemoryPlatform.deliver` and what came of it."""

    outbox_id: int
    kind: str
    result: str
    """``posted``, ``updated``, ``skipped`` or the failure's name."""


class MemoryPlatform(Platform):
    """A customer side and the staff side in memory. ``name`` is the value of ``Message.platform``:
    :meth:`named` makes one called ``"slack"`` so that its conversations look like Slack ones."""

    name: ClassVar[str] = "memory"
    staff_side = True

    def __init__(self, app: Application, *, workspace: str = WORKSPACE, internal_channel: str = INTERNAL_CHANNEL,
                 timeout: float = 30.0) -> None:
        super().__init__(app)
        self.service = app.service
        self.workspace = workspace
        self.internal_channel = internal_channel
        self.timeout = timeout
        """The longest :meth:`receive` waits for a message's turn."""
        self.posts: list[Post] = []
        """Everything posted, in order: customer threads and internal threads alike."""
        self.cards: list[StaffCard] = []
        self.reviews: list[Post] = []
        """The QA review queue's posts (``route`` holds why each was picked)."""
        """Every handoff card posted, in order."""
        self.ephemerals: list[tuple[str, str]] = []
        """What only one staff member saw (user, text): "Already claimed by", "already resolved"."""
        self.attempts: list[Attempt] = []
        self.finds = 0
        """How many times the courier looked for an earlier post."""
        self._failures: list[tuple[Failure, str | None, float]] = []
        self._by_outbox: dict[int, dict[str, Any]] = {}
        self._ts = itertools.count(1)
        self._events = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[Outcome]] = {}

    @classmethod
    def named(cls, name: str) -> type[MemoryPlatform]:
        """This class under another platform name (``Message.platform`` and the router's key)."""
        if name == cls.name:
            return cls
        if name not in _NAMED:
            _NAMED[name] = cast(type[MemoryPlatform], type(f"MemoryPlatform[{name}]", (cls,), {"name": name}))
        return _NAMED[name]

    async def setup(self) -> None:
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        for waiter in self._waiting.values():
            waiter.cancel()
        self._waiting.clear()

    # ---- inbound ----

    def message(self, text: str, *, author: Person, thread: str | None, at: datetime | None = None,
                channel: str = CUSTOMER_CHANNEL, event_id: str | None = None) -> Message:
        return Message(platform=self.name, workspace=self.workspace, channel=channel, thread=thread, author=author,
                       text=text, at=at or datetime.now(UTC), event_id=event_id or f"Mem{next(self._events)}")

    async def receive(self, message: Message, *, edit: bool = False) -> Outcome:
        """Store ``message`` in the inbox (durable first, as a platform does before acknowledging) and
        work on it; its outcome once its turn is done, whichever worker took it (an earlier message of
        its thread goes first). A duplicate event gives ``Outcome(duplicate=True)``."""
        waiter, inbound = await self._store(message, edit=edit)
        if inbound is not None:
            try:
                await self.application.inbox.work(inbound)
            except BaseException:
                self._drop(message, waiter)
                raise
        async with asyncio.timeout(self.timeout):
            return await waiter

    async def submit(self, message: Message, *, edit: bool = False) -> asyncio.Future[Outcome]:
        """Store ``message`` and hand it to the inbox's workers without waiting for them (a platform's fast
        acknowledgement); the future is its outcome. ``await bot.settle()`` waits for everything."""
        waiter, inbound = await self._store(message, edit=edit)
        if inbound is not None:
            self.application.inbox.submit(inbound)
        return waiter

    async def _store(self, message: Message, *, edit: bool) -> tuple[asyncio.Future[Outcome], Inbound | None]:
        key = f"{message.platform}:{message.event_id}"
        waiter = self._waiting[key] = asyncio.get_running_loop().create_future()
        kind = "edit" if edit else "message"
        try:
            inbound_id = await self.service.receive(message, kind=kind)
        except BaseException:
            self._drop(message, waiter)
            raise
        if inbound_id is None:
            self.outcome(message, Outcome(duplicate=True))
            return waiter, None
        return waiter, Inbound(id=inbound_id, platform=message.platform, event_id=message.event_id, kind=kind,
                               payload=message.model_dump(mode="json"), thread_key=thread_of(message))

    def outcome(self, message: Message, outcome: Outcome | BaseException) -> None:
        """A turn is done (called by :class:`RecordingService`): tell whoever waits for it."""
        waiter = self._waiting.pop(f"{message.platform}:{message.event_id}", None)
        if waiter is None or waiter.done():
            return
        if isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)

    def _drop(self, message: Message, waiter: asyncio.Future[Outcome]) -> None:
        """Nobody waits for ``message`` any more: its caller sees the exception itself."""
        self._waiting.pop(f"{message.platform}:{message.event_id}", None)
        if waiter.done():
            if not waiter.cancelled():
                waiter.exception()  # retrieved, so that asyncio does not report it again
        else:
            waiter.cancel()

    async def translate(self, inbound: Inbound) -> Translated:
        return Message.model_validate(inbound.payload), "edit" if inbound.kind == "edit" else "message"

    # ---- staff actions (the buttons on a card, and the "Send to customer" modal) ----

    async def claim(self, conversation_id: str, who: str = STAFF.id) -> ClaimResult:
        result = await self.service.claim(conversation_id, who)
        if not result.won:
            self.ephemerals.append((who, f"Already claimed by {result.owner or 'nobody: the conversation is closed'}."))
        await self.application.settle()
        return result

    async def loop_in(self, conversation_id: str, route: str, who: str = STAFF.id) -> bool:
        done = await self.service.loop_in(conversation_id, route, who)
        if not done:
            self.ephemerals.append((who, f"{route} is already looped in."))
        await self.application.settle()
        return done

    async def send_to_customer(self, conversation_id: str, text: str, who: Person = STAFF) -> list[str]:
        """The guard's objections (nothing sent), or ``[]`` once the message is queued and delivered."""
        problems = await self.service.send_to_customer(conversation_id, who.id, who.name, text)
        await self.application.settle()
        return problems

    async def resolve(self, conversation_id: str, who: str = STAFF.id) -> bool:
        done = await self.service.resolve(conversation_id, who)
        if not done:
            self.ephemerals.append((who, "This conversation is already resolved."))
        await self.application.settle()
        return done

    # ---- outbound ----

    def fail(self, failure: Failure, *, times: int = 1, kind: str | None = None, retry_after: float = 0.0) -> None:
        """Make the next ``times`` deliveries (of actions of ``kind`` only, if given) fail this way."""
        self._failures += [(failure, kind, retry_after)] * times

    async def deliver(self, parcel: Parcel) -> dict[str, Any] | None:
        failure = self._next_failure(parcel.action.kind)
        if failure is not None and failure[0] != "lost":
            self.attempts.append(Attempt(parcel.id, parcel.action.kind, failure[0]))
            match failure:
                case ("rate_limited", _, seconds):
                    raise RetryLater("HTTP 429 ratelimited", seconds)
                case ("unreachable", _, _):
                    raise Transient("connection refused", ambiguous=False)
                case ("server_error", _, _):
                    raise Transient("HTTP 500 internal_error")
                case _:
                    raise Undeliverable("channel_not_found")
        result = self._deliver(parcel)
        self.attempts.append(Attempt(parcel.id, parcel.action.kind, "skipped" if "skipped" in result
                                     else "updated" if parcel.action.kind == "card" else "posted"))
        if failure is not None:  # "lost": posted, and then the answer never came back
            raise Transient("HTTP 500 after the post (answer lost)")
        return result

    async def find(self, parcel: Parcel) -> dict[str, Any] | None:
        """The post an earlier attempt at ``parcel`` made, found by its outbox id (as Slack's message
        metadata finds it); card updates are safe to repeat: ``None``."""
        self.finds += 1
        if parcel.action.kind == "card":
            return None
        return self._by_outbox.get(parcel.id)

    async def permalink(self, conversation: Conversation) -> str | None:
        return f"memory://{conversation.channel}/{conversation.thread}"

    def _next_failure(self, kind: str) -> tuple[Failure, str | None, float] | None:
        for index, failure in enumerate(self._failures):
            if failure[1] in (None, kind):
                return self._failures.pop(index)
        return None

    def _deliver(self, parcel: Parcel) -> dict[str, Any]:
        action, conversation, handoff = parcel.action, parcel.conversation, parcel.handoff
        if action.kind in TO_CUSTOMER:
            if conversation.channel == self.internal_channel:  # internal stays internal
                raise Undeliverable(f"{conversation.channel} is not a customer channel")
            author = action.author_name or action.author_id if isinstance(action, StaffReply) else None
            post = self._post(parcel, conversation.channel, conversation.thread, action.kind,
                              getattr(action, "text", ""), author=author)
            return {"ts": post.ts}
        if isinstance(action, ReviewItem):  # the QA review queue, in its own channel
            post = self._post(parcel, REVIEW_CHANNEL, None, "review", action.text, route=action.reason)
            self.reviews.append(post)
            return {"ts": post.ts}
        if isinstance(action, AutonomyNotice):  # told to the leads, in the review channel
            verb = "now" if action.confirmed else "PROPOSED:"
            post = self._post(parcel, REVIEW_CHANNEL, None, "autonomy",
                              f"{action.intent} {verb} {action.previous} -> {action.mode}: {action.why}")
            self.reviews.append(post)
            return {"ts": post.ts}
        if handoff is None:
            return {"skipped": "no handoff for this conversation"}
        if isinstance(action, OpenHandoff) and not handoff.card_ts:
            posted = StaffCard(conversation_id=conversation.id, channel=self.internal_channel, ts=self._new_ts(),
                             outbox_id=parcel.id, brief=Brief.model_validate(handoff.brief),
                             state=conversation.state, claimed_by=conversation.claimed_by)
            self.cards.append(posted)
            result = {"card_channel": posted.channel, "card_ts": posted.ts}
            self._by_outbox[parcel.id] = result
            return result
        card = self._card(handoff.card_ts)
        if card is None:
            return {"skipped": "the handoff card is not posted"}
        if action.kind == "card":
            card.brief = Brief.model_validate(handoff.brief)
            card.state, card.claimed_by = conversation.state, conversation.claimed_by
            card.resolved_by, card.csat = handoff.resolved_by, handoff.csat
            card.looped_in = tuple(i.route for i in handoff.looped_in)
            card.updates += 1
            return {"ts": card.ts}
        if isinstance(action, OpenHandoff):  # raised while already handed over: said in the thread
            post = self._post(parcel, card.channel, card.ts, "raised",
                              f"severity raised to {action.severity}: " + "; ".join(action.reasons),
                              route=action.route)
        elif isinstance(action, MirrorToInternal):
            post = self._post(parcel, card.channel, card.ts, "mirror", action.text,
                              author=conversation.customer.name or conversation.customer.id)
        elif isinstance(action, Note):
            post = self._post(parcel, card.channel, card.ts, "note", action.text, route=action.route,
                              actor=action.actor)
        else:
            raise Undeliverable(f"no memory delivery for {action.kind!r}")
        card.thread.append(post)
        return {"ts": post.ts}

    def _post(self, parcel: Parcel, channel: str, thread: str | None, kind: str, text: str, *,
              author: str | None = None, route: str | None = None, actor: str | None = None) -> Post:
        post = Post(ts=self._new_ts(), channel=channel, thread=thread, kind=kind, text=text, outbox_id=parcel.id,
                    author=author, route=route, actor=actor)
        self.posts.append(post)
        self._by_outbox[parcel.id] = {"ts": post.ts}
        return post

    def _new_ts(self) -> str:
        return f"1800000000.{next(self._ts):06d}"

    def _card(self, ts: str | None) -> StaffCard | None:
        return next((card for card in self.cards if card.ts == ts), None)

    # ---- what people see ----

    def thread(self, thread: str, channel: str = CUSTOMER_CHANNEL) -> list[Post]:
        """What reached the customer in one thread, in order."""
        return [p for p in self.posts if p.channel == channel and p.thread == thread and p.kind in TO_CUSTOMER]

    def card(self, conversation_id: str) -> StaffCard | None:
        """The conversation's latest handoff card (a reopened conversation gets a new one)."""
        return next((c for c in reversed(self.cards) if c.conversation_id == conversation_id), None)

    def delivered(self, outbox_id: int) -> int:
        """How many times the action of this outbox row reached the platform (posted or updated)."""
        return sum(1 for a in self.attempts if a.outbox_id == outbox_id and a.result in ("posted", "updated"))


_NAMED: dict[str, type[MemoryPlatform]] = {}


class RecordingService(Service):
    """The service, telling the memory platform each turn's outcome (whichever worker did it)."""

    platform: MemoryPlatform | None = None

    async def work(self, inbound: Inbound, message: Message) -> Outcome | None:
        try:
            outcome = await super().work(inbound, message)
        except Exception as exc:
            if self.platform is not None:
                self.platform.outcome(message, exc)
            raise
        if outcome is not None and self.platform is not None:
            self.platform.outcome(message, outcome)
        return outcome


def replies(outcome: Outcome) -> list[str]:
    """What the bot said to the customer in one turn (answers and questions), as decided."""
    return [a.text for a in outcome.actions if isinstance(a, Reply | AskDetails)]


class TestBot:
    """The whole bot (inbox workers, engine, store, courier, SLA timer) on one :class:`MemoryPlatform`."""

    __test__ = False  # not a pytest test class

    def __init__(self, app: Application, platform: MemoryPlatform) -> None:
        self.app = app
        self.platform = platform

    @classmethod
    @contextlib.asynccontextmanager
    async def create(cls, engine: Engine, store: Store, *, platform: str = "slack", llm: LanguageModel | None = None,
                     first_reply: float = 10.0, workers: int = 4, settings: Settings | None = None,
                     **options: Any) -> AsyncIterator[TestBot]:
        """Build and start it; stopped on leaving. ``platform`` names the memory platform (``"slack"``: its
        conversations look like Slack ones). The courier retries at once (no backoff) and serves no HTTP."""
        service = RecordingService(engine, store, llm=llm, first_reply=first_reply)
        kind = MemoryPlatform.named(platform)
        factory: Factory = lambda app: kind(app, **options)  # noqa: E731
        app = Application(settings or Settings.model_construct(), engine, store, service=service,
                          platforms={platform: factory}, workers=workers, port=0,
                          courier_options={"backoff": 0.0})
        memory = app.platforms[platform]
        assert isinstance(memory, MemoryPlatform)
        service.platform = memory
        async with app:
            yield cls(app, memory)

    @property
    def service(self) -> Service:
        return self.app.service

    @property
    def store(self) -> Store:
        return self.app.store

    async def settle(self) -> None:
        """Everything received so far is handled, and everything due is delivered (or parked)."""
        await self.app.settle()

    def customer(self, person: Person, *, start: datetime | None = None, thread: str | None = None,
                 channel: str = CUSTOMER_CHANNEL) -> Customer:
        return Customer(self, person=person, start=start or datetime.now(UTC), thread=thread, channel=channel)


_threads = itertools.count()
_events = itertools.count()


class Customer:
    """``person`` writes in one thread (its own unless ``thread`` is given), starting at ``start``, a
    minute between messages; staff replies in the same thread come from ``staff``. Every outcome is kept."""

    def __init__(self, bot: TestBot, *, start: datetime, person: Person, thread: str | None = None,
                 channel: str = CUSTOMER_CHANNEL, staff: Person = STAFF) -> None:
        self.bot = bot
        self.person = person
        self.staff = staff
        self.channel = channel
        self.thread = thread or f"1700000000.{next(_threads):06d}"
        self.at = start
        self.outcomes: list[Outcome] = []

    def _message(self, text: str, role: Role) -> Message:
        author = self.person if role is Role.customer else self.staff.model_copy(update={"role": role})
        self.at += timedelta(minutes=1)
        return self.bot.platform.message(text, author=author, thread=self.thread, at=self.at, channel=self.channel,
                                         event_id=f"Ev{next(_events)}")

    async def says(self, text: str, *, role: Role = Role.customer) -> Outcome:
        """Write ``text`` and wait until it is handled and what it caused is delivered."""
        outcome = await self.bot.platform.receive(self._message(text, role))
        if outcome.delivered < len(outcome.queued):  # the worker that decided delivered only part of it
            await self.bot.settle()
        self.outcomes.append(outcome)
        return outcome

    async def sends(self, text: str, *, role: Role = Role.customer) -> asyncio.Future[Outcome]:
        """Write ``text`` without waiting: it is stored, and the inbox's workers take it. The future is its
        outcome (kept in :attr:`outcomes` once it is done)."""
        waiter = await self.bot.platform.submit(self._message(text, role))
        waiter.add_done_callback(lambda done: self.outcomes.append(done.result())
                                 if not done.cancelled() and done.exception() is None else None)
        return waiter

    def held(self) -> list[str]:
        """The bot's replies that the pre-send guard held, over the whole conversation."""
        return [a.text for o in self.outcomes for a in o.actions if isinstance(a, Hold)]

    @property
    def posts(self) -> list[Post]:
        """What reached this customer's thread, in order (the bot's replies and staff's)."""
        return self.bot.platform.thread(self.thread, self.channel)

    @property
    def replies(self) -> list[str]:
        """The texts delivered to this customer's thread, in order."""
        return [post.text for post in self.posts]

    @property
    def conversation_id(self) -> str:
        found = next((o.conversation.id for o in self.outcomes if o.conversation is not None), None)
        assert found is not None, "no message of this customer opened a conversation yet"
        return found

    def card(self) -> StaffCard | None:
        """The conversation's handoff card as staff see it."""
        return self.bot.platform.card(self.conversation_id)


__all__ = ["Customer", "MemoryPlatform", "Post", "RecordingService", "StaffCard", "TestBot"]
