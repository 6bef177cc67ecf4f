"""Delivery of the outbox: every action that changes something on a platform goes through here.

The service writes actions to the outbox in the same transaction as the decision that made them;
the :class:`Courier` takes due rows and hands them to a platform :class:`Transport`. Retries follow
what the platform says: a rate limit (HTTP 429) waits its ``Retry-After``; server errors, timeouts
and dropped connections back off exponentially (tenacity). A row that still fails is parked in the
database with a time to try again, so nothing is dropped and a restart picks it up; a row is marked
sent exactly once, so nothing delivered is sent again.

Delivered once: a row that may have been posted already (a timeout or a 5xx after the request left, a
process that died between the post and the mark) is looked for on the platform first
(:meth:`Transport.find`: Slack's message metadata carries the row's id, Discord's nonce does the same),
and only posted if it is not there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog
from pydantic import TypeAdapter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from bot.model import TO_CUSTOMER, Action, Conversation, Handoff
from bot.store import Card, Store
from bot.web.metrics import NO_METRICS, Metrics

log = structlog.get_logger(__name__)
_ACTION: TypeAdapter[Action] = TypeAdapter(Action)


class DeliveryError(Exception):
    """Base of what a transport raises when an action was not delivered."""


class RetryLater(DeliveryError):
    """The platform asked us to wait (a rate limit): try again after ``seconds``."""

    def __init__(self, message: str, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds


class Transient(DeliveryError):
    """A server error, a timeout or a dropped connection: try again with backoff.

    ``ambiguous``: the request may have been acted on (it left, and no answer came back, or a 5xx did);
    ``False`` when it certainly was not (the connection was refused)."""

    def __init__(self, message: str, *, ambiguous: bool = True) -> None:
        super().__init__(message)
        self.ambiguous = ambiguous


class Undeliverable(DeliveryError):
    """The platform refused for good (unknown channel, missing scope): keep the row as failed, for review."""


@dataclass(frozen=True)
class Parcel:
    """One outbox row, ready to deliver."""

    id: int
    action: Action
    conversation: Conversation
    handoff: Handoff | None
    attempts: int
    created_at: datetime | None = None


class Transport(Protocol):
    async def deliver(self, parcel: Parcel) -> dict[str, Any] | None:
        """Perform the action on the platform; return what it produced (e.g. ``{"ts": ...}``).

        Raise :class:`RetryLater`, :class:`Transient` or :class:`Undeliverable`.
        """

    async def find(self, parcel: Parcel) -> dict[str, Any] | None:
        """What :meth:`deliver` produced, if an earlier attempt did post ``parcel``; ``None`` if it is not
        there (or the action is safe to repeat). Raises as :meth:`deliver` does."""


class Router:
    """One outbox for every platform. What reaches a customer is delivered by the conversation's own
    platform; everything staff see (the card, mirrored messages, notes) by the staff side."""

    def __init__(self, staff: Transport, customers: Mapping[str, Transport]) -> None:
        self.staff = staff
        self.customers = dict(customers)

    async def deliver(self, parcel: Parcel) -> dict[str, Any] | None:
        if parcel.action.kind not in TO_CUSTOMER:
            return await self.staff.deliver(parcel)
        platform = parcel.conversation.platform
        transport = self.customers.get(platform)
        if transport is None:
            raise Undeliverable(f"no {platform} adapter is running to reach this customer")
        return await transport.deliver(parcel)

    async def find(self, parcel: Parcel) -> dict[str, Any] | None:
        if parcel.action.kind not in TO_CUSTOMER:
            return await self.staff.find(parcel)
        transport = self.customers.get(parcel.conversation.platform)
        return await transport.find(parcel) if transport is not None else None


Delivered = Callable[[Parcel, dict[str, Any] | None], Card | None]
"""What a delivery changes besides the row: a posted handoff card's place and SLA timer."""


class Courier:
    """Takes due outbox rows and delivers them, in order per conversation, concurrently across them."""

    def __init__(self, store: Store, transport: Transport, *, delivered: Delivered | None = None,
                 attempts: int = 4, backoff: float = 0.5, max_wait: float = 20.0,
                 park: timedelta = timedelta(seconds=30), lease: timedelta = timedelta(seconds=30),
                 idle_poll: float = 30.0) -> None:
        self.store = store
        self.transport = transport
        self.platforms = frozenset(transport.customers) if isinstance(transport, Router) else None
        """The platforms whose conversations this courier delivers (``None``: all)."""
        self.delivered = delivered
        self.attempts = attempts
        self.backoff = backoff
        self.max_wait = max_wait
        """Longest in-process wait; a longer Retry-After parks the row in the database instead."""
        self.park = park
        self.lease = lease
        self.idle_poll = idle_poll
        self.metrics: Metrics = NO_METRICS
        self._wake = asyncio.Event()
        self._draining = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # ---- lifecycle ----

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="baton-courier")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def kick(self) -> None:
        """Something was enqueued: deliver now rather than at the next poll."""
        self._wake.set()

    async def idle(self) -> None:
        """Return once everything due has been delivered (or parked). For tests and shutdown."""
        await self.drain()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.drain()
                upcoming = await self.store.next_due(platforms=self.platforms)
            except Exception:  # the database is down: log, wait, try again; never die
                log.exception("outbox_drain_failed")
                upcoming = None
            timeout = self.idle_poll
            if upcoming is not None:
                timeout = min(timeout, max(0.0, (upcoming - datetime.now(UTC)).total_seconds()))
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
            # arrives as the event is set, and stop() would then wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    # ---- delivery ----

    async def drain(self, *, now: datetime | None = None) -> int:
        """Deliver every row due by ``now`` (default: the clock); returns how many were delivered."""
        sent = 0
        async with self._draining:
            while rows := await self.store.take_due(lease=self.lease, now=now, platforms=self.platforms):
                results = await asyncio.gather(*(self._one(row) for row in rows))
                sent += sum(results)
        return sent

    async def deliver_now(self, rows: Sequence[dict[str, Any]], found: tuple[Conversation, Handoff | None]) -> int:
        """Deliver rows a worker has just written and taken (``Store.take_rows``), in order, then mark them
        sent in one transaction. The first failure parks its row and hands the rest back to the courier."""
        conversation, handoff = found
        done: list[tuple[int, dict[str, Any] | None, Card | None]] = []
        try:
            for index, row in enumerate(rows):
                outcome = await self._attempt(row, conversation, handoff)
                if outcome is None:
                    await self.store.release([r["id"] for r in rows[index + 1:]])
                    break
                result, card = outcome
                done.append((row["id"], result, card))
                if card is not None and handoff is not None:  # what follows goes in the card's thread
                    handoff = handoff.model_copy(update={"card_channel": card.channel, "card_ts": card.ts})
        finally:
            if done:
                await self.store.mark_sent_many(done)
        return len(done)

    async def _one(self, row: dict[str, Any]) -> bool:
        found = await self.store.with_handoff(row["conversation_id"])
        assert found is not None  # the foreign key guarantees it
        outcome = await self._attempt(row, *found)
        if outcome is None:
            return False
        result, card = outcome
        if not await self.store.mark_sent(row["id"], result, card=card):
            log.warning("outbox_already_sent", outbox_id=row["id"])
            return False
        return True

    async def _attempt(self, row: dict[str, Any], conversation: Conversation,
                       handoff: Handoff | None) -> tuple[dict[str, Any] | None, Card | None] | None:
        """Deliver one row (looking for it first when an earlier attempt may have posted it); what it
        produced, or ``None`` when it failed (the row is then parked or failed in the database)."""
        action = _ACTION.validate_python(row["payload"])
        bound = log.bind(conversation_id=row["conversation_id"], outbox_id=row["id"], kind=action.kind)
        parcel = Parcel(id=row["id"], action=action, conversation=conversation, handoff=handoff,
                        attempts=row["attempts"], created_at=row.get("created_at"))
        # In-process retries stop well within the lease, so no other worker takes the row meanwhile
        # (a last attempt may start just before the delay and take the Web API's 10 s timeout).
        stop = stop_after_attempt(self.attempts) | stop_after_delay(self.lease.total_seconds() / 3)
        retrying = AsyncRetrying(stop=stop, wait=self._wait,
                                 retry=retry_if_exception(self._retry_here), reraise=True)
        uncertain = bool(row.get("maybe_posted"))
        """A post may exist from an earlier attempt: look before posting."""
        result: dict[str, Any] | None = None
        try:
            async for attempt in retrying:
                with attempt:
                    found = await self.transport.find(parcel) if uncertain else None
                    if found is not None:
                        bound.info("outbox_found_posted")
                        result = found
                    else:
                        uncertain = False
                        try:
                            result = await self.transport.deliver(parcel)
                        except DeliveryError as exc:
                            uncertain = isinstance(exc, Transient) and exc.ambiguous
                            raise
        except Undeliverable as exc:
            bound.error("outbox_undeliverable", error=str(exc))
            self.metrics.delivery_failed(exc)
            await self.store.mark_failed(row["id"], str(exc), retry_at=None, posted=uncertain)
            return None
        except Exception as exc:  # RetryLater, Transient, or a bug: park it, never drop it
            wait = exc.seconds if isinstance(exc, RetryLater) else self.park.total_seconds()
            bound.warning("outbox_parked", error=str(exc) or type(exc).__name__, retry_in_s=wait)
            self.metrics.delivery_failed(exc)
            await self.store.mark_failed(row["id"], f"{type(exc).__name__}: {exc}",
                                         retry_at=datetime.now(UTC) + timedelta(seconds=wait),
                                         posted=uncertain or not isinstance(exc, DeliveryError))
            return None
        bound.info("outbox_delivered", attempts=row["attempts"] + 1)
        self.metrics.delivered()
        return result, self.delivered(parcel, result) if self.delivered is not None else None

    def _retry_here(self, exc: BaseException) -> bool:
        if isinstance(exc, RetryLater):
            return exc.seconds <= self.max_wait
        return isinstance(exc, Transient)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, RetryLater):
            return exc.seconds
        return float(wait_exponential(multiplier=self.backoff, max=self.max_wait)(state))
