"""A simulated Slack on the sending side: signed Events API deliveries, with Slack's retry rule.

Slack considers an event delivered only when the app answers it with a 2xx within 3 seconds. Anything
else (an error status, a refused or reset connection, no answer within 3 s) is delivered again later,
up to 3 times, with ``X-Slack-Retry-Num`` (1, 2, 3) and ``X-Slack-Retry-Reason`` (``http_error``,
``connection_failed``, ``http_timeout``, ``unknown_error``); Slack's own schedule is at once, after a
minute and after five. Here "later" is ``retry_delays`` and, when a test closes :attr:`SlackSender.up`,
also "once the app is back" (after a restart, after a database outage), so a test never waits minutes.

The sender records every attempt and which events were acknowledged: what Slack considers delivered,
and so what the app must never lose.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientConnectorError, ClientError, ClientSession, ClientTimeout, TCPConnector
from slack_fake import CUSTOMER_TEAM, SECRET, SHARED, envelope, message_event
from slack_sdk.signature import SignatureVerifier

ACK_WITHIN = 3.0
"""Slack's acknowledgement deadline, in seconds."""


@dataclass(frozen=True)
class Attempt:
    event_id: str
    url: str
    retry: int
    """0 for the first delivery, then Slack's ``X-Slack-Retry-Num``."""
    status: int | None
    """The HTTP status answered; ``None`` when no answer came (refused, reset, or past the deadline)."""
    reason: str | None
    """``None`` when acknowledged; else why Slack would retry (its ``X-Slack-Retry-Reason``)."""
    seconds: float
    """From sending to the answer (or to giving up on it)."""
    at: float = 0.0
    """When it was sent (``time.monotonic()``)."""
    error: str = ""
    """What went wrong, when no answer came."""

    @property
    def acknowledged(self) -> bool:
        return self.reason is None


@dataclass
class SlackSender:
    """Sends signed ``event_callback`` envelopes to ``url`` (or the URL given per call)."""

    url: str
    secret: str = SECRET
    timeout: float = ACK_WITHIN
    retries: int = 3
    retry_delays: Sequence[float] = (0.0, 1.0, 5.0)
    """How long after a failed attempt each retry goes: Slack's at once, after 1 min and after 5 min, at 1/60."""
    in_flight: int = 64
    """At most this many requests at once (Slack spreads its deliveries; so does this)."""
    retry_rate: float = 60.0
    """Retries per second at most: Slack spreads its retries rather than sending them all at once."""
    up: asyncio.Event = field(default_factory=asyncio.Event)
    """Retries wait for this to be set ("later": after a restart, after an outage); set by default."""
    attempts: list[Attempt] = field(default_factory=list)
    acknowledged: dict[str, float] = field(default_factory=dict)
    """Event id -> when it was acknowledged (``time.monotonic()``)."""
    given_up: set[str] = field(default_factory=set)
    """Events never acknowledged after every retry: Slack drops them (the app never promised anything)."""
    _http: ClientSession | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _limit: asyncio.Semaphore | None = None
    _tasks: set[asyncio.Task[bool]] = field(default_factory=set)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _next_retry: float = 0.0

    def __post_init__(self) -> None:
        self.up.set()

    async def __aenter__(self) -> SlackSender:
        # A fresh connection per request: a retry after a restart never rides a connection to a dead process.
        self._http = ClientSession(connector=TCPConnector(force_close=True, limit=0))
        self._limit = asyncio.Semaphore(self.in_flight)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._http is not None:
            await self._http.close()

    # ---- what tests build ----

    def event_id(self) -> str:
        return f"Ev{next(self._ids):08d}{int(time.time()) % 100000:05d}"

    def customer_message(self, user: str, text: str, *, ts: str, thread_ts: str | None = None,
                         kind: str = "message", event_id: str | None = None) -> dict[str, Any]:
        """The envelope of a Slack Connect customer's message in the shared channel (``user`` of the
        customer's own team, so a new ``U0C...`` id is a new customer)."""
        event = message_event(user, text, ts=ts, thread_ts=thread_ts, channel=SHARED, kind=kind,
                              team=CUSTOMER_TEAM, user_team=CUSTOMER_TEAM, source_team=CUSTOMER_TEAM,
                              user_profile={"real_name": f"Customer {user}", "display_name": "", "name": user.lower(),
                                            "team": CUSTOMER_TEAM, "is_restricted": False,
                                            "is_ultra_restricted": False})
        return envelope(event, event_id=event_id or self.event_id())

    # ---- sending ----

    def _signed(self, body: str, content_type: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        stamp = str(int(time.time()))
        return {"Content-Type": content_type, "X-Slack-Request-Timestamp": stamp,
                "X-Slack-Signature": SignatureVerifier(self.secret).generate_signature(timestamp=stamp, body=body),
                **(extra or {})}

    async def _attempt(self, body: dict[str, Any], url: str, retry: int, reason: str | None) -> Attempt:
        assert self._http is not None and self._limit is not None, "use the sender in 'async with'"
        raw = json.dumps(body)
        headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": reason or "unknown_error"} if retry else {}
        async with self._limit:
            started = time.monotonic()
            status: int | None = None
            why: str | None
            error = ""
            try:
                async with self._http.post(url, data=raw.encode(), timeout=ClientTimeout(total=self.timeout),
                                           headers=self._signed(raw, "application/json", headers)) as response:
                    await response.read()
                    status = response.status
                why = None if 200 <= status < 300 else "http_error"
            except ClientConnectorError as exc:
                why, error = "connection_failed", str(exc)
            except TimeoutError:
                why = "http_timeout"
            except ClientError as exc:  # reset, closed without an answer
                why, error = "unknown_error", f"{type(exc).__name__}: {exc}"
            attempt = Attempt(str(body["event_id"]), url, retry, status, why, time.monotonic() - started, started,
                              error)
        async with self._changed:
            self.attempts.append(attempt)
            if attempt.acknowledged:
                self.acknowledged.setdefault(attempt.event_id, time.monotonic())
            self._changed.notify_all()
        return attempt

    async def deliver(self, body: dict[str, Any], *, url: str | None = None) -> bool:
        """Deliver one event as Slack does: the first attempt now, then up to :attr:`retries` retries, each
        after its delay and once :attr:`up` is set. True once acknowledged; False when Slack gives up."""
        target = url or self.url
        reason: str | None = None
        for retry in range(self.retries + 1):
            if retry:
                delay = self.retry_delays[min(retry, len(self.retry_delays)) - 1]
                if delay:
                    await asyncio.sleep(delay)  # Slack's schedule, not a wait for something
                await self._retry_slot()
            attempt = await self._attempt(body, target, retry, reason)
            if attempt.acknowledged:
                return True
            reason = attempt.reason
        async with self._changed:
            self.given_up.add(str(body["event_id"]))
            self._changed.notify_all()
        return False

    async def _retry_slot(self) -> None:
        """Wait until the app is back (:attr:`up`) and it is this retry's turn at :attr:`retry_rate`."""
        while True:
            await self.up.wait()
            now = time.monotonic()
            slot = max(now, self._next_retry)
            self._next_retry = slot + 1 / self.retry_rate
            if slot > now:
                await asyncio.sleep(slot - now)  # the pace of Slack's retries
            if self.up.is_set():
                return

    def send(self, body: dict[str, Any], *, url: str | None = None) -> asyncio.Task[bool]:
        """:meth:`deliver` in the background (retries included); :meth:`finished` awaits it."""
        task = asyncio.create_task(self.deliver(body, url=url))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def burst(self, bodies: Iterable[dict[str, Any]], *, rate: float, url: str | None = None) -> None:
        """Send events at ``rate`` per second, each in the background as Slack does (a slow answer never
        holds back the next event). Returns once the last one is sent; :meth:`finished` awaits retries."""
        start = time.monotonic()
        for n, body in enumerate(bodies):
            due = start + n / rate
            if (ahead := due - time.monotonic()) > 0:
                await asyncio.sleep(ahead)  # the pace of the burst
            self.send(body, url=url)

    async def finished(self, timeout: float = 120) -> None:
        """Every event sent so far is acknowledged or given up on (retries included)."""
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.gather(*list(self._tasks))

    async def wait_acknowledged(self, count: int, timeout: float = 60) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.acknowledged) >= count), timeout)

    async def interact(self, payload: dict[str, Any], *, url: str | None = None) -> int:
        """A signed interactivity request (``payload=`` form-encoded, as a button click); its HTTP status.
        Slack never retries these: the clicker sees an error instead."""
        assert self._http is not None
        raw = "payload=" + urllib.parse.quote(json.dumps(payload))
        async with self._http.post(url or self.url, data=raw.encode(), timeout=ClientTimeout(total=self.timeout),
                                   headers=self._signed(raw, "application/x-www-form-urlencoded")) as response:
            await response.read()
            return response.status

    # ---- what tests read ----

    def failed_attempts(self) -> list[Attempt]:
        return [a for a in self.attempts if not a.acknowledged]

    def summary(self) -> dict[str, Any]:
        """Acknowledged and given-up events, and the attempts per (retry number, outcome)."""
        outcomes = Counter(f"{a.retry}:{a.reason or a.status}" for a in self.attempts)
        return {"acknowledged": len(self.acknowledged), "given_up": len(self.given_up),
                "in_flight": len(self._tasks), "ack_ms": self.ack_latency(), "attempts": dict(sorted(outcomes.items()))}

    def ack_latency(self) -> dict[str, int]:
        """Milliseconds from sending to the 2xx, over acknowledged attempts: p50, p99, max."""
        took = sorted(a.seconds for a in self.attempts if a.acknowledged)
        if not took:
            return {}
        return {"p50": round(1000 * took[len(took) // 2]), "p99": round(1000 * took[int(len(took) * 0.99)]),
                "max": round(1000 * took[-1])}

    def retried(self) -> int:
        """Events that needed at least one retry."""
        return len({a.event_id for a in self.attempts if a.retry})
