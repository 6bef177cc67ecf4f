"""Delivery of the outbox: every action that changes something on a platform goes through here.

The service writes actions to the outbox in the same transaction as the decision that made them;
the :class:`Courier` takes due rows and hands them to a platform :class:`Transport`. Retries follow
what the platform says: a rate limit (HTTP 429) waits its ``Retry-After``; server errors, timeouts
and dropped connections back off exponentially (tenacity). A row that still fails is parked in the
database with a time to try again, so nothing is dropped and a restart picks it up; a row is marked
sent exactly once, so nothing delivered is sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog
from pydantic import TypeAdapter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential

from bot.model import TO_CUSTOMER, Action, Conversation, Handoff
from bot.store import Store

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
    """A server error, a timeout or a dropped connection: try again with backoff."""


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


class Transport(Protocol):
    async def deliver(self, parcel: Parcel) -> dict[str, Any] | None:
        """Perform the action on the platform; return what it produced (e.g. ``{"ts": ...}``).

        Raise :class:`RetryLater`, :class:`Transient` or :class:`Undeliverable`.
        """


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


Delivered = Callable[[Parcel, dict[str, Any] | None], Awaitable[None]]


class Courier:
    """Takes due outbox rows and delivers them, in order per conversation, concurrently across them."""

    def __init__(self, store: Store, transport: Transport, *, delivered: Delivered | None = None,
                 attempts: int = 4, backoff: float = 0.5, max_wait: float = 30.0,
                 park: timedelta = timedelta(seconds=30), lease: timedelta = timedelta(minutes=5),
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

    async def _one(self, row: dict[str, Any]) -> bool:
        action = _ACTION.validate_python(row["payload"])
        bound = log.bind(conversation_id=row["conversation_id"], outbox_id=row["id"], kind=action.kind)
        found = await self.store.with_handoff(row["conversation_id"])
        assert found is not None  # the foreign key guarantees it
        conversation, handoff = found
        parcel = Parcel(id=row["id"], action=action, conversation=conversation, handoff=handoff,
                        attempts=row["attempts"])
        retrying = AsyncRetrying(stop=stop_after_attempt(self.attempts), wait=self._wait,
                                 retry=retry_if_exception(self._retry_here), reraise=True)
        try:
            async for attempt in retrying:
                with attempt:
                    result = await self.transport.deliver(parcel)
        except Undeliverable as exc:
            bound.error("outbox_undeliverable", error=str(exc))
            await self.store.mark_failed(row["id"], str(exc), retry_at=None)
            return False
        except Exception as exc:  # RetryLater, Transient, or a bug: park it, never drop it
            wait = exc.seconds if isinstance(exc, RetryLater) else self.park.total_seconds()
            bound.warning("outbox_parked", error=str(exc) or type(exc).__name__, retry_in_s=wait)
            await self.store.mark_failed(row["id"], f"{type(exc).__name__}: {exc}",
                                         retry_at=datetime.now(UTC) + timedelta(seconds=wait))
            return False
        # What the delivery produced is stored before the row is marked sent: if the process dies in
        # between, the row is delivered again, and the transport sees (say) that the card exists.
        if self.delivered is not None:
            await self.delivered(parcel, result)
        if not await self.store.mark_sent(row["id"], result):
            bound.warning("outbox_already_sent")
            return False
        bound.info("outbox_delivered", attempts=row["attempts"] + 1)
        return True

    def _retry_here(self, exc: BaseException) -> bool:
        if isinstance(exc, RetryLater):
            return exc.seconds <= self.max_wait
        return isinstance(exc, Transient)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, RetryLater):
            return exc.seconds
        return float(wait_exponential(multiplier=self.backoff, max=self.max_wait)(state))
