"""The protocol every platform implements, and the registry that finds them by name.

A platform only translates: inbound events into stored inbox rows and platform-free messages, outbox
parcels into its API's calls. It decides nothing. Adding one is one module that subclasses
:class:`Platform` and registers a factory (``register("name", "package.module:factory")``), plus its
tests; the :class:`bot.app.Application` builds, starts and stops it with everything else.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from aiohttp import web

from bot.inbox import Translated
from bot.model import Conversation
from bot.outbox import Parcel, Undeliverable
from bot.settings import Settings
from bot.store import Inbound

if TYPE_CHECKING:
    from bot.app import Application


class PlatformConfigError(Exception):
    """The platform's configuration cannot work; the message says what to set."""


class Platform:
    """Base class of a platform. ``name`` is the value of ``Message.platform`` for its customers."""

    name: ClassVar[str]
    staff_side: ClassVar[bool] = False
    """It is where staff work (handoff cards, the internal thread): Slack."""
    gateway: ClassVar[bool] = False
    """It holds a long-lived gateway connection (Discord): run it in one process only (the ``gateway`` role)."""

    def __init__(self, app: Application) -> None:
        self.application = app
        self.ready = False

    # ---- lifecycle (the application calls these in order) ----

    async def setup(self) -> None:
        """Log in and check the configuration; raise :class:`PlatformConfigError` when it cannot work."""

    async def start(self) -> None:
        """Connect (a gateway), after every platform's setup and before the inbox workers start."""

    async def stop(self) -> None:
        """Disconnect; nothing stored is lost by stopping."""

    def healthy(self) -> bool:
        """For readiness: connected and able to take events."""
        return self.ready

    def routes(self, web_app: web.Application) -> None:
        """Add the platform's HTTP routes (e.g. Slack's ``POST /slack/events``)."""

    # ---- inbound ----

    async def translate(self, inbound: Inbound) -> Translated:
        """One of this platform's stored events as a platform-free message, or ``None``."""
        raise NotImplementedError(f"{self.name} stores translated messages only")

    # ---- outbound ----

    async def deliver(self, parcel: Parcel) -> dict[str, Any] | None:
        raise Undeliverable(f"{self.name} delivers nothing")

    async def find(self, parcel: Parcel) -> dict[str, Any] | None:
        """What an earlier attempt at ``parcel`` produced, if it did post; ``None``: not there, or safe to repeat."""
        return None

    async def permalink(self, conversation: Conversation) -> str | None:
        """A link to the customer's conversation, for the handoff card."""
        return None


Factory = Callable[["Application"], Platform]
"""Builds the platform from the application's settings (raising :class:`PlatformConfigError`)."""
Configured = Callable[[Settings], bool]

_REGISTRY: dict[str, tuple[str | Factory, Configured]] = {
    "slack": ("adapters.slack:from_app", lambda s: bool(s.slack_bot_token or s.slack_signing_secret)),
    "discord": ("adapters.discord_gateway:from_app", lambda s: bool(s.discord_token)),
}


K = TypeVar("K")
V = TypeVar("V")


def remember(cache: OrderedDict[K, V], key: K, value: V, limit: int = 10_000) -> None:
    """Keep ``value`` in a bounded cache (the oldest entry goes first): the people, channels and threads a
    platform looks up once."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)


def register(name: str, factory: str | Factory, *, configured: Configured = lambda _settings: True) -> None:
    """Register a platform by name: a factory, or its import path (``"module:function"``, imported only
    when ``configured(settings)`` says the deployment uses it, so an unused platform's library is never
    loaded)."""
    _REGISTRY[name] = (factory, configured)


def configured(settings: Settings) -> dict[str, Factory]:
    """The factories of the platforms ``settings`` configure, by name, in registration order."""
    return {name: _load(factory) for name, (factory, wanted) in _REGISTRY.items() if wanted(settings)}


def _load(factory: str | Factory) -> Factory:
    if not isinstance(factory, str):
        return factory
    module, _, attribute = factory.partition(":")
    loaded: Factory = getattr(importlib.import_module(module), attribute)
    return loaded
