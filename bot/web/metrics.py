"""Metrics for operations: ``GET /metrics`` in Prometheus's text format (prometheus-client).

What an operator watches to know that Baton keeps up: events in, stored and handled; the inbox's and the
outbox's backlog; delivery failures; the language model's calls, tokens and fallbacks; decisions by tier
and route; how long a message waits for its turn and how long the engine takes to decide. Off by default
(``BATON_METRICS=1`` turns it on: a 404 otherwise); with ``BATON_METRICS_TOKEN`` a scrape needs
``Authorization: Bearer <token>`` (401 without it), compared in constant time.

Each :class:`bot.app.Application` owns its registry, never prometheus-client's global one, so that two
applications in one process (the tests, a web and a gateway role together) count apart. Labels are
bounded sets (platform, result, outcome, kind, tier, route, use, reason): never a customer's words, an id
or a secret. The backlog gauges are read from the database at each scrape, so every process of a
deployment reports the same figures (aggregate them with ``max``, not ``sum``); counters and histograms
are per process (``sum`` them).

The instrumented modules (service, courier, model) hold a :class:`Metrics`: the no-op base when metrics
are off, or for a service built without an application; :class:`Prometheus` when on. prometheus-client
is imported only then.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
import structlog
from aiohttp import web

from bot.store import Store, inbox, outbox

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from bot.app import Application
    from bot.service import Outcome

log = structlog.get_logger(__name__)

OTHER = "other"
"""The label value of anything outside a label's known set (an unexpected platform or route)."""
RESULTS = ("stored", "duplicate", "ignored")
OUTCOMES = ("decided", "recorded", "ignored", "failed")
FAILURES = ("rate_limited", "transient", "undeliverable", "error")
FALLBACKS = ("circuit_open", "budget", "failed", "deadline")
HANDLING_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
DECIDE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
MODEL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
SCRAPE_DB_TIMEOUT = 2.0


class Metrics:
    """The hooks the runtime calls at the points that matter, as no-ops: with metrics off, each costs a
    method call and nothing else."""

    def received(self, platform: str) -> None:
        """A platform handed an event to the inbox (before it is stored)."""

    def acknowledged(self, platform: str, result: str) -> None:
        """An event may be acknowledged: ``stored`` durably, a ``duplicate`` of one stored, or ``ignored``
        (nothing for Baton, answered without storing)."""

    def handled(self, platform: str, outcome: str) -> None:
        """An inbox row was worked on without a turn: ``ignored`` (its platform found nothing in it for
        the bot) or ``failed`` (it stays pending and is retried)."""

    async def stored_at(self, store: Store, inbound_id: int) -> datetime | None:
        """When an inbox row was stored (inside the turn's transaction), for the handling latency."""
        return None

    def turn(self, platform: str, outcome: Outcome, stored_at: datetime | None) -> None:
        """A turn committed: its outcome, its decision's tier and route, and the time since its row was stored."""

    def deciding(self) -> contextlib.AbstractContextManager[None]:
        """Times one call of the engine's decide."""
        return contextlib.nullcontext()

    def delivered(self) -> None:
        """An outbox row was delivered."""

    def delivery_failed(self, error: BaseException) -> None:
        """An outbox row was not delivered (parked for a retry, or failed for good)."""

    def model_call(self, use: str, *, ok: bool, prompt_tokens: int, completion_tokens: int, seconds: float) -> None:
        """One call to the language model (with its retries), and the tokens the endpoint counted."""

    def fallback(self, reason: str) -> None:
        """The offline engine went on without the model: ``circuit_open``, ``budget``, ``failed`` or ``deadline``."""

    def routes(self, app: web.Application) -> None:
        """Mount ``GET /metrics`` (off: nothing is mounted, and it answers 404)."""


NO_METRICS = Metrics()


@dataclass(frozen=True)
class Backlog:
    """The database's backlog at one moment (every process of a deployment sees the same)."""

    inbox_pending: int
    inbox_failed: int
    oldest_pending: datetime | None
    outbox_pending: int
    outbox_parked: int
    outbox_failed: int


async def backlog(store: Store) -> Backlog:
    """Count the inbox's and the outbox's rows waiting, parked or given up on (two grouped counts on
    their status indexes)."""
    parked = sa.func.sum(sa.case((outbox.c.attempts > 0, 1), else_=0))
    async with store.transaction() as conn:
        inbound = (await conn.execute(
            sa.select(inbox.c.status, sa.func.count(), sa.func.min(inbox.c.received_at))
            .where(inbox.c.status.in_(("pending", "failed"))).group_by(inbox.c.status))).all()
        outbound = (await conn.execute(
            sa.select(outbox.c.status, sa.func.count(), parked)
            .where(outbox.c.status.in_(("pending", "failed"))).group_by(outbox.c.status))).all()
    counts_in = {status: count for status, count, _oldest in inbound}
    oldest = next((value for status, _count, value in inbound if status == "pending"), None)
    counts_out = {status: count for status, count, _parked in outbound}
    waiting = next((int(value or 0) for status, _count, value in outbound if status == "pending"), 0)
    return Backlog(inbox_pending=counts_in.get("pending", 0), inbox_failed=counts_in.get("failed", 0),
                   oldest_pending=_utc(oldest) if oldest is not None else None,
                   outbox_pending=counts_out.get("pending", 0), outbox_parked=waiting,
                   outbox_failed=counts_out.get("failed", 0))


class _BacklogCollector:
    """The backlog gauges, from the figures the scrape has just read (none when the database did not answer)."""

    def __init__(self) -> None:
        self.latest: Backlog | None = None
        self.read_at = 0.0

    def describe(self) -> list[Metric]:
        return list(self._families(Backlog(0, 0, None, 0, 0, 0), now=0.0, up=True))

    def collect(self) -> Iterator[Metric]:
        latest = self.latest
        if latest is None:
            yield from self._families(None, now=self.read_at, up=False)
        else:
            yield from self._families(latest, now=self.read_at, up=True)

    @staticmethod
    def _families(latest: Backlog | None, *, now: float, up: bool) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        yield GaugeMetricFamily("baton_store_up", "Whether the database answered this scrape's backlog count "
                                "(0: the backlog gauges are left out).", value=1 if up else 0)
        if latest is None:
            return
        oldest = max(0.0, now - latest.oldest_pending.timestamp()) if latest.oldest_pending is not None else 0.0
        for name, text, value in (
                ("baton_inbox_pending", "Inbox rows stored and not yet handled (every process).",
                 latest.inbox_pending),
                ("baton_inbox_oldest_pending_seconds", "Age of the oldest pending inbox row (0: none).", oldest),
                ("baton_inbox_failed", "Inbox rows given up on after their retries, kept for an operator.",
                 latest.inbox_failed),
                ("baton_outbox_pending", "Outbox rows not yet delivered, parked ones included.",
                 latest.outbox_pending),
                ("baton_outbox_parked", "Pending outbox rows that failed at least once and wait for a retry.",
                 latest.outbox_parked),
                ("baton_outbox_failed", "Outbox rows the platform refused for good, kept for review.",
                 latest.outbox_failed)):
            yield GaugeMetricFamily(name, text, value=value)


class Prometheus(Metrics):
    """The metrics of one application, in a registry of its own."""

    def __init__(self, store: Store, *, platforms: Iterable[str] = (), routes: Iterable[str] = (),
                 uses: Iterable[str] = ("turn", "handoff"), token: str | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.store = store
        self.platforms = frozenset(platforms)
        self.known_routes = frozenset(routes)
        self.uses = frozenset(uses)
        self._token = token.encode() if token else None
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_received = Counter("baton_events_received", "Events a platform handed to the inbox.",
                                       ["platform"], registry=r)
        self.events_acknowledged = Counter(
            "baton_events_acknowledged", "Events that may be acknowledged: stored durably, a duplicate of one "
            "stored, or ignored (nothing for Baton).", ["platform", "result"], registry=r)
        self.events_handled = Counter(
            "baton_events_handled", "Inbox rows worked on: decided by the engine, recorded without a decision "
            "(a staff reply, a CSAT score), ignored, or failed (retried).", ["platform", "outcome"], registry=r)
        self.decisions = Counter("baton_decisions", "The engine's decisions on customer messages.",
                                 ["tier", "route"], registry=r)
        self.handling = Histogram("baton_handling_seconds", "From an inbox row stored to its turn committed.",
                                  ["platform"], buckets=HANDLING_BUCKETS, registry=r)
        self.decide = Histogram("baton_decide_seconds", "One call of the engine's decide.",
                                buckets=DECIDE_BUCKETS, registry=r)
        self.deliveries = Counter("baton_outbox_delivered", "Outbox rows delivered.", registry=r)
        self.delivery_failures = Counter(
            "baton_delivery_failures", "Outbox deliveries that failed, after the in-process retries: rate_limited "
            "and transient are parked for a retry, undeliverable is given up on, error is a bug.", ["kind"],
            registry=r)
        self.model_calls = Counter("baton_model_calls", "Calls to the language model, with their retries.",
                                   ["use", "result"], registry=r)
        self.model_tokens = Counter("baton_model_tokens", "Tokens the model's endpoint counted.", ["type"],
                                    registry=r)
        self.model_seconds = Histogram("baton_model_call_seconds", "One call to the language model, retries "
                                       "included.", ["use"], buckets=MODEL_BUCKETS, registry=r)
        self.fallbacks = Counter(
            "baton_model_fallbacks", "Turns the offline engine decided without the model: circuit_open, budget "
            "(the conversation's tokens are spent), failed, deadline (the first-reply time ran out).", ["reason"],
            registry=r)
        self._backlog = _BacklogCollector()
        r.register(self._backlog)
        for platform in self.platforms:  # every known series starts at 0, so rate() sees the first event
            self.events_received.labels(platform)
            for result in RESULTS:
                self.events_acknowledged.labels(platform, result)
            for outcome in OUTCOMES:
                self.events_handled.labels(platform, outcome)
        for kind in FAILURES:
            self.delivery_failures.labels(kind)
        for reason in FALLBACKS:
            self.fallbacks.labels(reason)
        for kind in ("prompt", "completion"):
            self.model_tokens.labels(kind)

    # ---- bounded labels ----

    def _platform(self, platform: str) -> str:
        return platform if platform in self.platforms else OTHER

    def _route(self, route: str | None) -> str:
        if route is None:
            return "none"
        return route if route in self.known_routes else OTHER

    @staticmethod
    def _of(value: str, allowed: tuple[str, ...]) -> str:
        return value if value in allowed else OTHER

    # ---- hooks ----

    def received(self, platform: str) -> None:
        self.events_received.labels(self._platform(platform)).inc()

    def acknowledged(self, platform: str, result: str) -> None:
        self.events_acknowledged.labels(self._platform(platform), self._of(result, RESULTS)).inc()

    def handled(self, platform: str, outcome: str) -> None:
        self.events_handled.labels(self._platform(platform), self._of(outcome, OUTCOMES)).inc()

    async def stored_at(self, store: Store, inbound_id: int) -> datetime | None:
        async with store.transaction() as conn:
            value = (await conn.execute(sa.select(inbox.c.received_at).where(inbox.c.id == inbound_id))
                     ).scalar_one_or_none()
        return _utc(value) if value is not None else None

    def turn(self, platform: str, outcome: Outcome, stored_at: datetime | None) -> None:
        decision = outcome.decision
        self.handled(platform, "decided" if decision is not None else "ignored" if outcome.ignored else "recorded")
        if decision is not None:
            self.decisions.labels(str(decision.tier), self._route(decision.route)).inc()
        if stored_at is not None:
            waited = (datetime.now(UTC) - stored_at).total_seconds()
            self.handling.labels(self._platform(platform)).observe(max(0.0, waited))

    @contextlib.contextmanager
    def deciding(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.decide.observe(time.perf_counter() - started)

    def delivered(self) -> None:
        self.deliveries.inc()

    def delivery_failed(self, error: BaseException) -> None:
        from bot.outbox import RetryLater, Transient, Undeliverable

        kind = ("rate_limited" if isinstance(error, RetryLater) else "transient" if isinstance(error, Transient)
                else "undeliverable" if isinstance(error, Undeliverable) else "error")
        self.delivery_failures.labels(kind).inc()

    def model_call(self, use: str, *, ok: bool, prompt_tokens: int, completion_tokens: int, seconds: float) -> None:
        use = use if use in self.uses else OTHER
        self.model_calls.labels(use, "ok" if ok else "error").inc()
        self.model_tokens.labels("prompt").inc(max(0, prompt_tokens))
        self.model_tokens.labels("completion").inc(max(0, completion_tokens))
        self.model_seconds.labels(use).observe(seconds)
        if not ok:
            self.fallback("failed")

    def fallback(self, reason: str) -> None:
        self.fallbacks.labels(self._of(reason, FALLBACKS)).inc()

    # ---- the endpoint ----

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/metrics", self.scrape)

    async def scrape(self, request: web.Request) -> web.Response:
        """The registry in the format the scraper asks for (Prometheus's text format unless its ``Accept``
        names OpenMetrics), with the backlog read from the database now."""
        from prometheus_client.exposition import choose_encoder

        if self._token is not None and not _bearer_matches(request.headers.get("Authorization", ""), self._token):
            return web.Response(status=401, text="a bearer token is required\n",
                                headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        try:
            async with asyncio.timeout(SCRAPE_DB_TIMEOUT):
                latest: Backlog | None = await backlog(self.store)
        except Exception as exc:  # the counters are still worth having: the gauges are left out
            log.warning("metrics_backlog_unavailable", error=type(exc).__name__)
            latest = None
        # No await between these two lines: a concurrent scrape cannot swap the figures in between.
        self._backlog.latest, self._backlog.read_at = latest, time.time()
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(self.registry), headers={"Content-Type": content_type})


def _bearer_matches(header: str, token: bytes) -> bool:
    """``Authorization: Bearer <token>``, the token compared in constant time."""
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token)


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def metrics_for(app: Application) -> Metrics:
    """The application's metrics, wired into its service, courier and language model: :data:`NO_METRICS`
    unless the settings turn them on."""
    settings = app.settings
    if not settings.metrics:
        return NO_METRICS
    token = settings.metrics_token
    metrics = Prometheus(app.store, platforms=app.platforms, routes=app.service.policy.routes,
                         token=token.get_secret_value() if token is not None else None)
    app.service.metrics = metrics
    app.courier.metrics = metrics
    if app.service.llm is not None:
        app.service.llm.metrics = metrics
    return metrics


__all__ = ["NO_METRICS", "Backlog", "Metrics", "Prometheus", "backlog", "metrics_for"]
