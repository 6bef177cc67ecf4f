"""The inbox's workers: every inbound event is stored before it is acknowledged, then worked on here.

A platform stores an event (:meth:`bot.store.Store.receive`) and hands the row over with
:meth:`Inbox.submit` (the fast path, no second read). Rows that nobody is working on (a process died
with them, another process's worker gave up on them for now, an earlier message of their thread held
them back) are found by a poll, so a crash at any point, in any process, leaves work to the next
worker or to the next start. Each row is worked on under the database's lock (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL), in its thread's order, in one transaction (:meth:`bot.service.Service.work`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import structlog

from bot.model import Message
from bot.service import Outcome, Service
from bot.store import Inbound

log = structlog.get_logger(__name__)

class NotYet(Exception):  # noqa: N818 (a signal, not an error)
    """A platform cannot read a stored event yet (it waits for another one): it stays pending, and the
    poll brings it back."""


Translated = tuple[Message, str] | None
"""A stored event as a platform-free message, with its kind (``message`` or ``edit``); ``None``: nothing
for the bot (a bot's own message, an unserved channel, a malformed event)."""
Translator = Callable[[Inbound], Awaitable[Translated]]


class Tracker:
    """Which events have been worked on (platforms acknowledge first and work after). Tests await it
    instead of sleeping; it also counts what was handled."""

    def __init__(self) -> None:
        self._done: OrderedDict[str, None] = OrderedDict()
        self._changed = asyncio.Condition()
        self.handled = 0

    async def done(self, key: str | None) -> None:
        async with self._changed:
            self.handled += 1
            if key:
                self._done[key] = None
                while len(self._done) > 10_000:
                    self._done.popitem(last=False)
            self._changed.notify_all()

    async def wait(self, key: str, timeout: float = 10.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: key in self._done), timeout)

    async def wait_count(self, count: int, timeout: float = 10.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.handled >= count), timeout)


class Inbox:
    """A pool of workers over the inbox. ``translators`` read each platform's own stored events (rows of
    kind ``message`` and ``edit`` hold a translated :class:`Message` and need none)."""

    def __init__(self, service: Service, translators: Mapping[str, Translator] | None = None, *,
                 workers: int = 4, poll: float = 1.0, grace: timedelta = timedelta(seconds=2),
                 backlog: int = 10_000) -> None:
        self.service = service
        self.translators = dict(translators or {})
        self.workers = workers
        self.poll = poll
        self.grace = grace
        """How old a pending row must be before the poll takes it: younger ones are being worked on."""
        self.tracker = Tracker()
        self._queue: asyncio.Queue[Inbound | int] = asyncio.Queue(backlog)
        self._flight: set[int] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._idle = asyncio.Condition()
        service.next_in_thread = self.submit_id

    # ---- lifecycle ----

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._worker(), name=f"baton-inbox-{n}") for n in range(self.workers)]
            self._tasks.append(asyncio.create_task(self._poller(), name="baton-inbox-poll"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        # What was handed over and not worked on stays pending in the database, for the next start.
        while not self._queue.empty():
            self._queue.get_nowait()
        self._flight.clear()

    async def idle(self, timeout: float = 30.0) -> None:
        """Return once nothing submitted is waiting or being worked on (for tests and shutdown)."""
        async with self._idle:
            await asyncio.wait_for(self._idle.wait_for(lambda: not self._flight and self._queue.empty()), timeout)

    # ---- handing work over ----

    def submit(self, inbound: Inbound) -> None:
        """Work on a row just stored. When the backlog is full the row waits for the poll: nothing is lost."""
        self._put(inbound.id, inbound)

    def submit_id(self, inbound_id: int) -> None:
        """Work on a stored row known only by its id (the next of a thread whose turn just finished)."""
        self._put(inbound_id, inbound_id)

    def _put(self, inbound_id: int, item: Inbound | int) -> None:
        if inbound_id in self._flight:
            return
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(item)
            self._flight.add(inbound_id)

    # ---- working ----

    async def _worker(self) -> None:
        while True:
            item = await self._queue.get()
            inbound_id = item if isinstance(item, int) else item.id
            try:
                await self.work(item)
            except Exception:  # logged with the row by the service; the row stays pending and is retried
                log.exception("inbox_work_failed", inbox_id=inbound_id)
            finally:
                self._flight.discard(inbound_id)
                async with self._idle:
                    self._idle.notify_all()

    async def work(self, item: Inbound | int) -> Outcome | None:
        """Translate and handle one row; its outcome, or ``None`` when there was nothing to do (the row is
        done, holds nothing for the bot, or is not this worker's to do now)."""
        inbound = item if isinstance(item, Inbound) else await self._load(item)
        if inbound is None:
            return None
        try:
            translated = await self.translate(inbound)
        except NotYet as wait:  # not worked on: it stays pending, and the poll brings it back
            log.info("inbound_waits", inbox_id=inbound.id, reason=str(wait))
            return None
        except BaseException:
            await self.tracker.done(self._key(inbound))
            raise
        try:
            if translated is None:
                await self.service.ignore(inbound)
                return None
            message, kind = translated
            return await self.service.work(replace(inbound, kind=kind), message)
        finally:
            await self.tracker.done(self._key(inbound))

    @staticmethod
    def _key(inbound: Inbound) -> str:
        return str(inbound.payload.get("event_id") or inbound.event_id)

    async def translate(self, inbound: Inbound) -> Translated:
        if inbound.kind in ("message", "edit"):
            return Message.model_validate(inbound.payload), inbound.kind
        translator = self.translators.get(inbound.platform)
        if translator is None:
            raise LookupError(f"no {inbound.platform} platform here to read a {inbound.kind!r} event")
        return await translator(inbound)

    async def _load(self, inbound_id: int) -> Inbound | None:
        rows = await self.service.store.pending_inbound(ids=[inbound_id])
        return rows[0] if rows else None

    async def _poller(self) -> None:
        first = True
        while True:
            try:
                before = None if first else datetime.now(UTC) - self.grace
                for inbound in await self.service.store.pending_inbound(received_before=before, limit=200):
                    if inbound.platform in self.translators:  # a platform this process runs
                        self.submit(inbound)
                first = False
            except Exception as exc:  # the database is down: try again at the next poll
                log.warning("inbox_poll_failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self.poll)
