"""The application object: builds, starts and stops everything, in one place.

In the way of python-telegram-bot's ``Application`` and Starlette's lifespan, :class:`Application`
owns the lifecycle of the store, the service (engine and model), the inbox's workers, the courier, the
SLA timer, the platforms and the HTTP server with its health routes::

    async with Application(settings, engine, store) as app:   # setup, start, serve
        await app.closed()                                     # until a platform gives up, or cancelled

Platforms are plug-ins (:mod:`bot.platform`): the registry builds the ones the settings configure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from bot.engine import Engine
from bot.inbox import Inbox, Tracker
from bot.outbox import Courier, Parcel, Router, Undeliverable
from bot.platform import Factory, Platform, PlatformConfigError, configured
from bot.service import Service
from bot.settings import Settings
from bot.store import Store
from bot.web.dashboard import mount as mount_dashboard
from bot.web.metrics import Metrics, metrics_for

if TYPE_CHECKING:
    from bot.llm import LanguageModel

log = structlog.get_logger(__name__)

Role = Literal["all", "web", "gateway"]
"""``web``: HTTP platforms, the inbox and the courier (run N of these); ``gateway``: also the platforms
that hold a gateway connection (Discord; run one); ``all``: everything in one process."""


class _NoStaffSide:
    async def deliver(self, parcel: Parcel) -> dict[str, Any] | None:
        raise Undeliverable("no staff-side platform (Slack) is configured for handoff cards")

    async def find(self, parcel: Parcel) -> dict[str, Any] | None:
        return None


class Application:
    def __init__(self, settings: Settings, engine: Engine, store: Store, *, llm: LanguageModel | None = None,
                 service: Service | None = None,
                 platforms: Mapping[str, Factory] | None = None, role: Role = "all", workers: int = 4,
                 courier_options: Mapping[str, Any] | None = None, inbox_options: Mapping[str, Any] | None = None,
                 host: str = "0.0.0.0", port: int | None = None) -> None:
        self.settings = settings
        self.store = store
        self.service = service or Service(engine, store, llm=llm, first_reply=settings.first_reply)
        self.inbox = Inbox(self.service, workers=workers, **dict(inbox_options or {}))
        self.role = role
        self.platforms: dict[str, Platform] = {}
        for name, factory in (configured(settings) if platforms is None else platforms).items():
            platform = factory(self)
            if platform.gateway and role == "web":
                continue
            self.platforms[name] = platform
        staff = next((p for p in self.platforms.values() if p.staff_side), None)
        self.router = Router(staff or _NoStaffSide(), self.platforms)
        self.courier = Courier(store, self.router, delivered=self.service.delivered, **dict(courier_options or {}))
        self.service.wake = self.courier.kick
        self.service.deliver = self.courier.deliver_now
        self.inbox.translators.update({name: p.translate for name, p in self.platforms.items()})
        self.metrics: Metrics = metrics_for(self)
        """The operations metrics, in a registry of this application's own (off: the no-op)."""
        self.host = host
        self.port = settings.port if port is None else port
        self.started = False
        self._sla: asyncio.Task[None] | None = None
        self._digest: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._closed: asyncio.Future[None] | None = None

    @property
    def tracker(self) -> Tracker:
        """What the inbox's workers have finished (tests await it)."""
        return self.inbox.tracker

    # ---- lifecycle ----

    async def start(self) -> None:
        """Set every platform up (raising :class:`PlatformConfigError` before anything is answered), start
        the workers (what a previous run left pending goes first), the courier, the SLA timer and the HTTP
        server, then connect the platforms (gateways, Socket Mode)."""
        self._closed = asyncio.get_running_loop().create_future()
        for platform in self.platforms.values():
            await platform.setup()
        self.inbox.start()
        self.courier.start()
        self._sla = asyncio.create_task(self._sla_loop(), name="baton-sla")
        self._start_digest()
        if self.port:
            self._runner = web.AppRunner(self.web_app(), access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, self.host, self.port).start()
        for platform in self.platforms.values():
            await platform.start()
        self.started = True
        log.info("baton_started", role=self.role, platforms=sorted(self.platforms), port=self.port)

    async def stop(self) -> None:
        """Stop taking work, then stop everything in the reverse order. What is stored stays stored:
        pending inbox and outbox rows are worked on at the next start, here or in another process."""
        self.started = False
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for platform in reversed(list(self.platforms.values())):
            with contextlib.suppress(Exception):
                await platform.stop()
        for task in (self._sla, self._digest):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._sla = self._digest = None
        await self.inbox.stop()
        await self.courier.stop()

    async def __aenter__(self) -> Application:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def close_with(self, error: BaseException | None = None) -> None:
        """A platform gave up for good (a refused gateway): :meth:`closed` ends, with ``error``."""
        if self._closed is not None and not self._closed.done():
            if error is None:
                self._closed.set_result(None)
            else:
                self._closed.set_exception(error)

    async def closed(self) -> None:
        """Wait until a platform gives up for good (raising its error), or until cancelled."""
        assert self._closed is not None, "start() first"
        await self._closed

    async def settle(self) -> None:
        """Everything received so far is handled and delivered (or parked). For tests and shutdown."""
        await self.inbox.idle()
        await self.courier.idle()

    def _start_digest(self) -> None:
        """The weekly digest's timer (bot/digest.py), when Slack is configured and ``BATON_LEADS_CHANNEL`` set;
        every process may run it: the week's row in the database decides which one posts."""
        from bot import digest

        client = getattr(self.platforms.get("slack"), "client", None)
        if client is None:
            return
        job = digest.timer(self.settings, self.store, self.service.policy, client)
        if job is not None:
            self._digest = asyncio.create_task(job, name="baton-digest")

    async def _sla_loop(self, poll: float = 60.0) -> None:
        while True:
            try:
                await self.service.check_sla()
                upcoming = await self.store.next_sla()
            except Exception as exc:
                log.warning("sla_check_failed", error=f"{type(exc).__name__}: {exc}")
                upcoming = None
            wait = poll if upcoming is None else min(poll, max(1.0, (upcoming - datetime.now(UTC)).total_seconds()))
            await asyncio.sleep(wait)

    # ---- HTTP: the platforms' routes and health ----

    def web_app(self) -> web.Application:
        """Every platform's routes, ``GET /healthz`` (readiness: 200 only when events can be handled and
        stored), ``GET /livez`` (liveness: the process answers) and ``GET /metrics`` (when on)."""
        _quiet_bad_requests()
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_get("/healthz", self._ready)
        app.router.add_get("/livez", self._live)
        self.metrics.routes(app)  # GET /metrics, when BATON_METRICS is on
        for platform in self.platforms.values():
            platform.routes(app)
        mount_dashboard(self, app)  # /dashboard, when "Sign in with Slack" is configured
        return app

    async def _live(self, _request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def _ready(self, _request: web.Request) -> web.Response:
        problems = [] if self.started else ["starting"]
        problems += [f"{name} is not connected" for name, p in self.platforms.items() if not p.healthy()]
        try:
            async with asyncio.timeout(2):
                await self.store.ping()
        except Exception as exc:
            problems.append(f"database: {type(exc).__name__}")
        if problems:
            return web.json_response({"ok": False, "problems": problems}, status=503)
        return web.json_response({"ok": True})


class _BadRequests(logging.Filter):
    """aiohttp answers a request it cannot parse (a header over 8 KB, too many headers) with 400 itself,
    and logs it as "Error handling request" at ERROR with a traceback: one warning line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError) and 400 <= (error.code or 500) < 500:
            lines = error.message.strip().splitlines() or ["bad request"]
            log.warning("http_request_refused", status=error.code, reason=lines[0][:200])
            return False
        return True


def _quiet_bad_requests() -> None:
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _BadRequests) for f in logger.filters):
        logger.addFilter(_BadRequests())


__all__ = ["Application", "PlatformConfigError", "Role"]
