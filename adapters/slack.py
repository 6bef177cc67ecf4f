"""Slack: customers in Slack Connect channels, staff on handoff cards in an internal channel, and the QA
review queue (sampled decisions with one-click tags) in a review channel.

A thin edge over one Bolt ``AsyncApp``, as a :class:`bot.platform.Platform`: an event is stored in the
inbox by a Bolt middleware before Slack gets its 200 (a 503 when the database cannot take it, so that
Slack retries), and translated into a platform-free message when a worker takes it; interactions
become service calls; the outbox's actions become Web API calls, each post carrying its outbox id in
the message's metadata so that a retry after an ambiguous failure finds it instead of posting twice.
Nothing here decides anything. ``setup`` checks the workspace (as discord.py's ``setup_hook``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import ClientConnectorError, ClientError, ClientSession, ClientTimeout, TCPConnector, web
from dotenv import dotenv_values
from pydantic import ValidationError
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.internals import parse_body
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters import slack_blocks as blocks
from adapters import slack_home
from adapters import slack_markup as markup
from adapters import slack_payloads as payloads
from bot.inbox import NotYet, Translated
from bot.model import (
    TO_CUSTOMER,
    AskDetails,
    AutonomyNotice,
    Conversation,
    Handoff,
    Message,
    Person,
    Reply,
    ReviewItem,
    Role,
    StaffReply,
)
from bot.outbox import Parcel, RetryLater, Transient, Undeliverable
from bot.platform import Platform, PlatformConfigError, remember
from bot.policy import Policy
from bot.settings import Settings
from bot.store import Inbound, thread_key
from bot.text import attachment, compose

if TYPE_CHECKING:
    from bot.app import Application

log = structlog.get_logger(__name__)

PLATFORM = "slack"
DEFAULT_API_URL = "https://slack.com/api/"
_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{2,}$")
_GROUP_ID = re.compile(r"^[SUWCG][A-Z0-9]{2,}$")
_IGNORED_SUBTYPES = {"message_deleted", "channel_join", "channel_leave", "group_join", "group_leave",
                     "channel_topic", "channel_purpose", "channel_name", "pinned_item", "unpinned_item",
                     "bot_message", "ekm_access_denied", "channel_archive", "channel_unarchive",
                     "reminder_add", "tombstone", "huddle_thread", "sh_room_created"}
SIGNATURE_MAX_AGE = 300
"""Seconds a signed request stays valid (Slack's own rule against replays)."""
MENTION_LOOKUPS = 10
"""People and channels looked up by id per message; more mentions than this are shown by id."""
ROOT_WAIT = 10.0
"""Seconds after a thread's first message during which a reply waits for that message to be stored."""
METADATA_TYPE = "baton_outbox"
"""The message metadata event type that carries an outbox row's id on every post (delivered once)."""
NOT_STAFF = "Only members of this workspace's support team can act on handoff cards."
_TRANSIENT_ERRORS = {"internal_error", "fatal_error", "service_unavailable", "request_timeout"}


class SlackConfigError(PlatformConfigError):
    """The Slack configuration cannot work; the message says what to fix."""


@dataclass(frozen=True)
class SlackConfig:
    bot_token: str
    signing_secret: str
    customer_channels: frozenset[str]
    internal_channel: str
    api_url: str = DEFAULT_API_URL
    app_token: str | None = None
    groups: Mapping[str, str] = field(default_factory=dict)
    """Route name -> the Slack user group (S...), user or channel id mentioned for it."""
    review_channel: str | None = None
    """Where the QA review queue is posted (``BATON_REVIEW_CHANNEL``); ``None``: the internal channel."""
    leads_channel: str | None = None
    """The support leads' channel (``BATON_LEADS_CHANNEL``): autonomy proposals and changes, the weekly digest."""

    @property
    def review(self) -> str:
        """The channel of the QA review posts: the review channel, else the internal channel."""
        return self.review_channel or self.internal_channel

    @property
    def leads(self) -> str:
        """The channel of autonomy proposals and changes: the leads' channel, else the review channel."""
        return self.leads_channel or self.review

    def __repr__(self) -> str:  # never print the credentials
        return (f"SlackConfig(customer_channels={sorted(self.customer_channels)}, "
                f"internal_channel={self.internal_channel!r}, review_channel={self.review_channel!r}, "
                f"leads_channel={self.leads_channel!r}, "
                f"api_url={self.api_url!r})")

    @classmethod
    def from_settings(cls, settings: Settings, policy: Policy, environ: Mapping[str, str] | None = None,
                      *, customers_elsewhere: bool = False) -> SlackConfig:
        """Validate the configuration, listing every problem with what to set.

        ``customers_elsewhere``: customers are served on another platform (Discord), so Slack may be
        the staff side only, with no customer channel of its own."""
        problems = []
        if settings.slack_bot_token is None:
            problems.append("SLACK_BOT_TOKEN is not set: the bot token (xoxb-...) from the app's OAuth page")
        if settings.slack_signing_secret is None:
            problems.append("SLACK_SIGNING_SECRET is not set: the app's signing secret (Basic Information page)")
        if not settings.customer_channels and not customers_elsewhere:
            problems.append("BATON_CUSTOMER_CHANNELS is not set: the IDs (C...) of the Slack Connect channels "
                            "where customers are served, comma-separated")
        for channel in settings.customer_channels:
            if not _CHANNEL_ID.match(channel):
                problems.append(f"BATON_CUSTOMER_CHANNELS: {channel!r} is not a channel ID (C... or G...; "
                                "channels are configured by ID, never by name)")
        internal = settings.internal_channel
        if not internal:
            problems.append("BATON_INTERNAL_CHANNEL is not set: the ID (C...) of the internal channel "
                            "where handoff cards are posted")
        elif not _CHANNEL_ID.match(internal):
            problems.append(f"BATON_INTERNAL_CHANNEL: {internal!r} is not a channel ID (C... or G...)")
        elif internal in settings.customer_channels:
            problems.append(f"BATON_INTERNAL_CHANNEL {internal} is also a customer channel: handoff cards "
                            "would be shown to customers")
        review = settings.review_channel
        if review is not None and not _CHANNEL_ID.match(review):
            problems.append(f"BATON_REVIEW_CHANNEL: {review!r} is not a channel ID (C... or G...); leave it "
                            "unset to post review items in the internal channel")
        elif review is not None and review in settings.customer_channels:
            problems.append(f"BATON_REVIEW_CHANNEL {review} is also a customer channel: review items (the "
                            "customer's words, staff's tags) would be shown to customers")
        leads = settings.leads_channel
        if leads is not None and not _CHANNEL_ID.match(leads):
            problems.append(f"BATON_LEADS_CHANNEL: {leads!r} is not a channel ID (C... or G...)")
        elif leads is not None and leads in settings.customer_channels:
            problems.append(f"BATON_LEADS_CHANNEL {leads} is also a customer channel: the leads' figures would be "
                            "shown to customers")
        groups = route_groups(policy, environ)
        for route, target in groups.items():
            if not _GROUP_ID.match(target):
                problems.append(f"BATON_ROUTE_{route.upper()}: {target!r} is not a user group (S...), user "
                                "(U...) or channel (C...) ID")
        if problems:
            raise SlackConfigError("the Slack configuration is incomplete:\n  - " + "\n  - ".join(problems))
        assert settings.slack_bot_token and settings.slack_signing_secret and internal
        api_url = settings.slack_api_url or DEFAULT_API_URL
        return cls(bot_token=settings.slack_bot_token.get_secret_value(),
                   signing_secret=settings.slack_signing_secret.get_secret_value(),
                   customer_channels=frozenset(settings.customer_channels), internal_channel=internal,
                   api_url=api_url if api_url.endswith("/") else api_url + "/",
                   app_token=settings.slack_app_token.get_secret_value() if settings.slack_app_token else None,
                   groups=groups, review_channel=review or None, leads_channel=leads or None)


def route_groups(policy: Policy, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each route's Slack id: ``BATON_ROUTE_<NAME>`` from the environment (or ``.env``), else the policy's."""
    if environ is None:
        environ = {**{k: v for k, v in dotenv_values(".env").items() if v}, **os.environ}
    return {name: (environ.get(f"BATON_ROUTE_{name.upper()}") or route.slack).strip()
            for name, route in policy.routes.items()}


def from_app(app: Application) -> SlackAdapter:
    """The registry's factory: Slack from the application's settings (raises :class:`SlackConfigError`)."""
    from bot.platform import configured

    others = [name for name in configured(app.settings) if name != PLATFORM]
    config = SlackConfig.from_settings(app.settings, app.service.policy, customers_elsewhere=bool(others))
    return SlackAdapter(app, config)


def _kept(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` as the inbox keeps it: a text (or an edited message's text) longer than Baton ever reads is
    cut there, so that storing it, which every acknowledgement waits its turn for, stays as quick as any other."""
    longest = markup.MAX_TEXT * 2
    text, edited = event.get("text"), event.get("message")
    if isinstance(text, str) and len(text) > longest:
        event = {**event, "text": text[:longest]}
    if isinstance(edited, dict) and isinstance(edited.get("text"), str) and len(edited["text"]) > longest:
        event = {**event, "message": {**edited, "text": edited["text"][:longest]}}
    return event


class SlackAdapter(Platform):
    """The Slack edge: customers in Slack Connect channels and, for every platform, the staff side
    (handoff cards, the internal thread, the buttons on the card)."""

    name = PLATFORM
    staff_side = True

    def __init__(self, app: Application, config: SlackConfig, *, client: AsyncWebClient | None = None) -> None:
        super().__init__(app)
        self.service = app.service
        self.config = config
        self.client = client or AsyncWebClient(token=config.bot_token, base_url=config.api_url, timeout=10)
        # slack-sdk retries a dropped connection itself, blind to whether the post went through: the courier
        # retries instead, looking for the post first.
        self.client.retry_handlers = []
        self._session: ClientSession | None = None
        self._socket_mode: Any = None
        self._secret = config.signing_secret.encode()

        async def authorize() -> AuthorizeResult:  # one workspace, known from auth.test at setup
            return AuthorizeResult(enterprise_id=None, team_id=self.team_id, bot_token=config.bot_token,
                                   bot_user_id=self.bot_user_id, bot_id=self.bot_id)

        # Bolt's own self-event filter is off: the inbox middleware accounts for every signed event.
        self.app = AsyncApp(signing_secret=config.signing_secret, client=self.client, authorize=authorize,
                            process_before_response=False, ignoring_self_events_enabled=False)
        self.inbox = app.inbox
        self.tracker = app.inbox.tracker
        self.team_id: str | None = None
        self.bot_user_id: str | None = None
        self.bot_id: str | None = None
        self._people: OrderedDict[str, Person] = OrderedDict()
        self._channel_cache: OrderedDict[str, str] = OrderedDict()
        self._links: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._lookups: dict[str, asyncio.Future[Person]] = {}
        self._register()

    # ---- lifecycle ----

    async def setup(self) -> None:
        """Who we are, and whether the configured channels can work. Raises :class:`SlackConfigError`."""
        if self.client.session is None:  # one pooled HTTP session for every Web API call, not one per call
            self._session = self.client.session = ClientSession(
                connector=TCPConnector(limit=64), timeout=ClientTimeout(total=self.client.timeout))
        try:
            auth = await self.client.auth_test()
        except SlackApiError as exc:
            raise SlackConfigError(f"Slack refused the bot token ({_error(exc)}): check SLACK_BOT_TOKEN") from None
        except (ClientError, TimeoutError) as exc:
            raise SlackConfigError(f"cannot reach the Slack API at {self.config.api_url}: {exc}") from None
        self.team_id, self.bot_user_id, self.bot_id = auth["team_id"], auth["user_id"], auth.get("bot_id")
        self.workspace_url: str | None = auth.get("url")
        """The workspace's address (``https://name.slack.com/``): where a message's permalink starts."""
        internal = await self._channel(self.config.internal_channel, "BATON_INTERNAL_CHANNEL")
        if internal.get("is_ext_shared") or internal.get("is_pending_ext_shared"):
            raise SlackConfigError(
                f"BATON_INTERNAL_CHANNEL {self.config.internal_channel} is shared with another organisation "
                "(Slack Connect): handoff cards and internal notes would reach people outside the company. "
                "Use a channel with no external members.")
        review = self.config.review
        if review != self.config.internal_channel:
            info = await self._channel(review, "BATON_REVIEW_CHANNEL")
            if info.get("is_ext_shared") or info.get("is_pending_ext_shared"):
                raise SlackConfigError(
                    f"BATON_REVIEW_CHANNEL {review} is shared with another organisation (Slack Connect): "
                    "review items and staff's tags would reach people outside the company. Use a channel "
                    "with no external members, or leave it unset to use the internal channel.")
        leads = self.config.leads_channel
        if leads is not None and leads not in (self.config.internal_channel, review):
            info = await self._channel(leads, "BATON_LEADS_CHANNEL")
            if info.get("is_ext_shared") or info.get("is_pending_ext_shared"):
                raise SlackConfigError(
                    f"BATON_LEADS_CHANNEL {leads} is shared with another organisation (Slack Connect): the "
                    "leads' figures would reach people outside the company. Use a channel with no external members.")
        for channel in sorted(self.config.customer_channels):
            info = await self._channel(channel, "BATON_CUSTOMER_CHANNELS")
            if not info.get("is_ext_shared"):
                log.warning("customer_channel_not_shared", channel=channel,
                            hint="not a Slack Connect channel: every member of your workspace counts as staff there")
        placeholders = [r for r, g in self.config.groups.items() if g.startswith("S0000")]
        if placeholders:
            log.warning("route_groups_are_placeholders", routes=placeholders,
                        hint="set BATON_ROUTE_<NAME> to each route's Slack user group ID")
        self.ready = True
        log.info("slack_ready", team=self.team_id, bot_user=self.bot_user_id,
                 customer_channels=sorted(self.config.customer_channels), internal=self.config.internal_channel,
                 review=self.config.review)

    async def _channel(self, channel: str, variable: str) -> dict[str, Any]:
        try:
            return dict((await self.client.conversations_info(channel=channel))["channel"])
        except SlackApiError as exc:
            raise SlackConfigError(f"{variable}: Slack cannot show channel {channel} to the bot ({_error(exc)}); "
                                   "check the ID and invite the bot with /invite @Baton") from None

    async def start(self) -> None:
        """Socket Mode when ``SLACK_APP_TOKEN`` is set; else the HTTP Events API, on the application's port."""
        if self.config.app_token:
            from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

            self._socket_mode = AsyncSocketModeHandler(self.app, self.config.app_token)
            await self._socket_mode.connect_async()
            log.info("slack_socket_mode_connected")
        else:
            log.info("slack_http_listening", port=self.application.port, path="/slack/events")

    async def stop(self) -> None:
        self.ready = False
        if self._socket_mode is not None:
            await self._socket_mode.close_async()
            self._socket_mode = None
        if self._session is not None:
            await self._session.close()
            self._session = self.client.session = None

    def routes(self, web_app: web.Application) -> None:
        """``POST /slack/events``: events and interactivity, signature-checked by Bolt."""
        web_app.router.add_post("/slack/events", self._http)

    async def _http(self, request: web.Request) -> web.Response:
        """The signature is checked on the raw bytes before anything is parsed: an unsigned, stale or
        garbled request gets 401, a signed one that does not parse 400, a body over the limit 413 (by
        aiohttp), each with one log line and never a traceback. Then Bolt has it."""
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            log.warning("slack_request_refused", status=413, reason="body over the limit")
            raise
        if not self._signed(body, request.headers):
            log.warning("slack_request_refused", status=401, reason="bad, stale or missing signature")
            return web.json_response({"ok": False, "error": "invalid signature"}, status=401)
        # Bolt reads the body by the Content-Type header as sent (text/plain with a body starting "{" is JSON)
        content_type = request.headers.get("Content-Type", "").split(";")[0] or None
        if (problem := _unreadable(body, content_type)) is not None:
            log.warning("slack_request_refused", status=400, reason=problem)
            return web.json_response({"ok": False, "error": problem}, status=400)
        try:  # Bolt builds the request's context from the payload's ids, and may raise on a shape it cannot read
            bolt_request = AsyncBoltRequest(body=body.decode(), query=request.query_string,
                                            headers=dict(request.headers))
            response = await self.app.async_dispatch(bolt_request)
        except Exception as exc:
            log.warning("slack_request_refused", status=400, reason=f"unroutable: {type(exc).__name__}: {exc}"[:300])
            return web.json_response({"ok": False, "error": "malformed payload"}, status=400)
        if response.status == 404:  # signed, well formed, and nothing here handles it: acknowledged, ignored
            log.info("slack_request_ignored", type=bolt_request.body.get("type"))
            return web.Response(status=200)
        return await to_aiohttp_response(response)

    def _signed(self, body: bytes, headers: Mapping[str, str]) -> bool:
        """Slack's v0 signature over the raw bytes, at most 5 minutes old. (slack-sdk's verifier decodes
        the body as UTF-8 first, so it cannot judge a garbled body: it raises.)"""
        stamp, signature = headers.get("X-Slack-Request-Timestamp", ""), headers.get("X-Slack-Signature", "")
        if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12 or not signature \
                or abs(int(time.time()) - int(stamp)) > SIGNATURE_MAX_AGE:
            return False
        expected = hmac.new(self._secret, b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(f"v0={expected}", signature)

    # ---- inbound: events ----

    def _register(self) -> None:
        self.app.error(self._on_error)
        self.app.middleware(self._store_event)
        slack_home.register(self)
        self.app.action(blocks.CLAIM)(self._on_claim)
        self.app.action(re.compile(f"^{blocks.LOOP_IN}:"))(self._on_loop_in)
        self.app.action(blocks.SEND)(self._on_send)
        self.app.view(blocks.SEND_VIEW)(self._on_send_submitted)
        self.app.action(blocks.RESOLVE)(self._on_resolve)
        self.app.action(blocks.APPROVE)(self._on_approve)
        self.app.action(blocks.REJECT)(self._on_reject)
        self.app.action(blocks.ESCALATE)(self._on_escalate)
        self.app.action(blocks.TAG)(self._on_tag)
        self.app.action(blocks.PROMOTE)(self._on_promote)
        self.app.action(blocks.UNNEEDED)(self._on_unneeded)

    async def _on_error(self, error: Exception, body: dict[str, Any]) -> BoltResponse:
        """A payload Bolt or a listener could not read (a shape no model foresaw): one warning line, and a
        400 when Slack is still waiting for the answer; never a traceback."""
        log.warning("slack_payload_unreadable", type=body.get("type") if isinstance(body, dict) else None,
                    error=f"{type(error).__name__}: {error}"[:300])
        return BoltResponse(status=400, body="")

    async def _store_event(self, req: AsyncBoltRequest, resp: BoltResponse,
                           next: Callable[[], Awaitable[BoltResponse]]) -> BoltResponse:  # noqa: A002 (Bolt's name)
        """Durable before acknowledged: a signed event is stored in the inbox, and only then answered
        200; when the database cannot take it, 503, and Slack sends it again. Interactions go on to
        their listeners."""
        body = req.body
        if body.get("type") != "event_callback":
            return await next()
        envelope_id = body.get("event_id") if isinstance(body.get("event_id"), str) else ""
        event = body.get("event") or {}
        if isinstance(event, dict) and event.get("type") == "app_home_opened":
            return await next()  # changes nothing, never stored: adapters/slack_home.py draws the Home at once
        wanted = self._wanted(event) if isinstance(event, dict) else None
        self.service.metrics.received(PLATFORM)
        if wanted is None:
            self.service.metrics.acknowledged(PLATFORM, "ignored")
            await self.tracker.done(envelope_id)
            return BoltResponse(status=200, body="")
        key, thread = wanted
        event = _kept(event)
        try:
            inbound_id = await self.service.store.receive(
                PLATFORM, key, kind="event", payload={"event_id": envelope_id, "event": event}, thread=thread,
                seq=str(event.get("event_ts") or event.get("ts") or ""))
        except Exception as exc:
            log.error("inbox_unavailable", event_id=envelope_id, error=f"{type(exc).__name__}: {exc}",
                      hint="answered 503: Slack retries the event")
            return BoltResponse(status=503, body="the inbox cannot store events right now")
        self.service.metrics.acknowledged(PLATFORM, "duplicate" if inbound_id is None else "stored")
        if inbound_id is None:
            log.info("duplicate_event_dropped", event_id=envelope_id, key=key)  # a retry of an event already stored
            await self.tracker.done(envelope_id)
        else:
            self.inbox.submit(Inbound(id=inbound_id, platform=PLATFORM, event_id=key, kind="event",
                                          payload={"event_id": envelope_id, "event": event}, thread_key=thread))
        return BoltResponse(status=200, body="")

    def _wanted(self, event: dict[str, Any]) -> tuple[str, str] | None:
        """The inbox key and thread of a message event worth storing, from the event alone (no call):
        ``None`` for what Baton never acts on (other channels, bots, joins, deletions) and for an event
        that does not fit :class:`adapters.slack_payloads.MessageEvent` (logged)."""
        if event.get("type") not in ("message", "app_mention"):
            return None
        channel = event.get("channel")
        if not isinstance(channel, str) or channel not in self.config.customer_channels:
            return None
        try:
            message = payloads.MessageEvent.model_validate(event)
        except ValidationError as exc:
            log.warning("slack_event_rejected", channel=channel, reason=payloads.reason(exc))
            return None
        if message.subtype == "message_changed":
            edited = message.message
            if edited is None or not edited.user or edited.bot_id or \
                    (message.previous_message or {}).get("text") == edited.text:
                return None  # a bot's edit, or an unfurl / attachment change
            stamp = (edited.edited or {}).get("ts") or message.event_ts or message.ts
            thread = edited.thread_ts or edited.ts
            return f"{channel}:{edited.ts}:edit:{stamp}", thread_key(PLATFORM, self.team_id or "", channel, thread)
        if message.subtype in _IGNORED_SUBTYPES or message.bot_id or message.user in (None, self.bot_user_id):
            return None  # deletions, joins, bots (ourselves included): on purpose, no reply and no loop
        if message.subtype not in (None, "thread_broadcast", "file_share", "me_message"):
            log.info("message_subtype_ignored", subtype=message.subtype)
            return None
        if message.ts is None:
            return None
        return f"{channel}:{message.ts}", thread_key(PLATFORM, self.team_id or "", channel,
                                                     message.thread_ts or message.ts)

    async def translate(self, inbound: Inbound) -> Translated:
        """A stored message event as a platform-free message (looking its author up, once per person)."""
        event = dict(inbound.payload.get("event") or {})
        if event.get("subtype") == "message_changed":
            edited = dict(event.get("message") or {})
            edited.setdefault("channel", event.get("channel"))
            message = await self._translate(edited, event_id=inbound.event_id)
            if message is None or message.author.role is not Role.customer:
                return None
            return message, "edit"
        await self._root_first(event)
        message = await self._translate(event, event_id=inbound.event_id)
        if message is None:
            log.warning("malformed_message_event", event_id=inbound.payload.get("event_id"), keys=sorted(event))
            return None
        return message, "message"

    async def _root_first(self, event: dict[str, Any]) -> None:
        """A reply that reached us before its thread's first message (two processes, the first one busy)
        waits for it, a little: raises :class:`bot.inbox.NotYet` while the first message, written moments
        before, is neither stored nor part of a conversation."""
        thread, ts, channel = event.get("thread_ts"), event.get("ts"), event.get("channel")
        if not (isinstance(thread, str) and isinstance(ts, str) and isinstance(channel, str)) or thread == ts:
            return
        try:
            age = datetime.now(UTC).timestamp() - float(thread)
        except ValueError:
            return
        if age > ROOT_WAIT or await self.service.store.received(PLATFORM, f"{channel}:{thread}"):
            return
        if await self.service.store.find_conversation(PLATFORM, self.team_id or "", channel, thread) is None:
            raise NotYet(f"the first message of thread {thread} is not stored yet")

    async def _translate(self, event: dict[str, Any], *, event_id: str) -> Message | None:
        """A Slack message event as a platform-free :class:`Message`; ``None`` if it lacks what one needs."""
        ts, user, channel = event.get("ts"), event.get("user"), event.get("channel")
        if not (isinstance(ts, str) and isinstance(user, str) and isinstance(channel, str)):
            return None
        try:
            at = datetime.fromtimestamp(float(ts), UTC)
        except (ValueError, OverflowError):
            return None
        team = event.get("user_team") or event.get("team") or (event.get("user_profile") or {}).get("team")
        person = await self._person(user, team if isinstance(team, str) else None, event.get("user_profile"))
        return Message(platform=PLATFORM, workspace=self.team_id or "", channel=channel,
                       thread=event.get("thread_ts") or ts, author=person, text=await self.text_of(event),
                       at=at, event_id=event_id)

    async def text_of(self, event: Mapping[str, Any]) -> str:
        """Everything the message carries, as the customer saw it (:func:`bot.text.compose`): its text or
        rich text with mentions by name, what it forwards or shares, its files by name (a Slack Connect
        file's name from ``files.info``); at most Slack's longest message."""
        raw = event.get("text") if isinstance(event.get("text"), str) else ""
        own = (raw or markup.rich_text(event.get("blocks")))[:markup.MAX_TEXT * 2]
        forwards = markup.shared(event.get("attachments"))
        users, channels = markup.wanted([own, *(text for _, text, _ in forwards)])
        users |= {author_id for _, _, author_id in forwards if author_id}
        names = markup.Names(users=await self._names(users), channels=await self._channel_names(channels))
        files = [await self._file(file) for file in markup.files(event)]
        return compose(markup.render(own, names), files=files, limit=markup.MAX_TEXT,
                       forwards=[(author or (names.users.get(author_id) if author_id else None),
                                  markup.render(text[:markup.MAX_TEXT], names))
                                 for author, text, author_id in forwards])

    async def _names(self, users: set[str]) -> dict[str, str | None]:
        """Display names of mentioned people (``None`` for the bot, whose mention is dropped); the first
        few are looked up, the rest shown by id."""
        names: dict[str, str | None] = {}
        for user in sorted(users)[:MENTION_LOOKUPS]:
            names[user] = None if user == self.bot_user_id else (await self._person(user, None, None)).name or user
        return names

    async def _channel_names(self, channels: set[str]) -> dict[str, str]:
        names: dict[str, str] = {}
        for channel in sorted(channels)[:MENTION_LOOKUPS]:
            if channel not in self._channel_cache:
                try:
                    info = (await self.client.conversations_info(channel=channel))["channel"]
                    remember(self._channel_cache, channel, str(info.get("name") or channel))
                except (SlackApiError, ClientError, TimeoutError, KeyError, TypeError):
                    remember(self._channel_cache, channel, channel)
            names[channel] = self._channel_cache[channel]
        return names

    async def _file(self, file: Mapping[str, Any]) -> str:
        """One file's line: its name and kind; a Slack Connect file's from ``files.info`` (``files:read``)."""
        if markup.needs_lookup(file) and isinstance(file.get("id"), str):
            try:
                file = {**file, **(await self.client.files_info(file=file["id"]))["file"]}
            except (SlackApiError, ClientError, TimeoutError, KeyError, TypeError) as exc:
                log.warning("files_info_failed", file=file.get("id"), error=_error(exc),
                            hint="add the files:read scope to the Slack app to see Slack Connect files' names")
        name = file.get("name") or file.get("title")
        kind = file.get("pretty_type") or file.get("filetype")
        return attachment(name if isinstance(name, str) else "a file", kind if isinstance(kind, str) else None)

    async def _person(self, user: str, team: str | None, profile: dict[str, Any] | None) -> Person:
        """Who wrote: staff when their team is the installing workspace's, else a customer of that team.

        Looked up once per user (``users.info``, for the name and time zone) and kept; a burst of
        messages from someone new shares one lookup."""
        cached = self._people.get(user)
        if cached is not None:
            return cached
        pending = self._lookups.get(user)
        if pending is None:
            pending = self._lookups[user] = asyncio.ensure_future(self._look_up(user, team, profile))
            pending.add_done_callback(lambda _: self._lookups.pop(user, None))
        return await asyncio.shield(pending)

    async def _look_up(self, user: str, team: str | None, profile: dict[str, Any] | None) -> Person:
        name, tz, known = None, None, team is not None
        try:
            info = (await self.client.users_info(user=user))["user"]
            name = (info.get("profile") or {}).get("display_name") or info.get("real_name") or info.get("name")
            tz, team, known = info.get("tz"), team or info.get("team_id"), True
        except (SlackApiError, ClientError, TimeoutError) as exc:
            log.warning("users_info_failed", user=user, error=_error(exc))  # carry on without name and zone
        if not name and profile:  # the event's own copy of the profile: only its text fields count
            name = next((v for k in ("display_name", "real_name", "name") if isinstance(v := profile.get(k), str)
                         and v), None)
        staff = team is not None and team == self.team_id
        person = Person(id=user, name=name or None, role=Role.staff if staff else Role.customer,
                        organisation=None if staff else team, timezone=tz)
        if known:  # a failed lookup is tried again next time: it decides who is staff
            remember(self._people, user, person)
        return person

    # ---- inbound: interactions on the card ----

    def _staff(self, user: payloads.User) -> bool:
        """Staff are proven, never assumed: the clicker's own workspace is the installing one (a payload
        without the clicker's team is not staff's)."""
        return self.team_id is not None and user.team_id == self.team_id

    async def _clicked(self, body: dict[str, Any]) -> tuple[str, payloads.Action, Conversation] | None:
        """The staff member, the button and its conversation of a card click, or ``None`` when the click
        cannot act: a payload that does not fit is logged and dropped, a clicker from outside the workspace
        or a card whose conversation Baton does not know is told so (only the clicker sees it)."""
        try:
            click = payloads.Click.model_validate(body)
        except ValidationError as exc:
            log.warning("slack_interaction_rejected", kind="block_actions", reason=payloads.reason(exc))
            return None
        who, action = click.user.id, click.actions[0] if click.actions else None
        if action is None:
            log.warning("slack_interaction_rejected", kind="block_actions", reason="no action")
            return None
        if not self._staff(click.user):
            log.warning("slack_interaction_refused", user=who, team=click.user.team_id, action=action.action_id,
                        reason="not a member of the installing workspace")
            await self._ephemeral(body, who, NOT_STAFF)
            return None
        # a button carries the conversation id; a menu's option carries it before its choice
        option = action.selected_option
        target = action.value if option is None else blocks.split_option(option.value)[0]
        conversation = await self.service.store.get_conversation(target) if target else None
        if conversation is None:
            log.warning("slack_interaction_refused", user=who, action=action.action_id, value=target,
                        reason="no such conversation")
            await self._ephemeral(body, who, "This card's conversation is not in Baton's records, so the "
                                             "button cannot act on it.")
            return None
        return who, action, conversation

    async def _on_claim(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        try:
            if (clicked := await self._clicked(body)) is None:
                return
            who, _, conversation = clicked
            result = await self.service.claim(conversation.id, who)
            if not result.won:
                owner = blocks.mention(result.owner) if result.owner else "nobody: the conversation is closed"
                await self._ephemeral(body, who, f"Already claimed by {owner}.")
        finally:
            await self.tracker.done(_trigger(body))

    async def _on_loop_in(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        try:
            if (clicked := await self._clicked(body)) is None:
                return
            who, action, conversation = clicked
            route = action.action_id.split(":", 1)[1]
            if route not in self.service.policy.routes:
                log.warning("slack_interaction_refused", user=who, action=action.action_id, reason="unknown route")
                await self._ephemeral(body, who, f"There is no team called {route!r} in Baton's policy any more.")
            elif not await self.service.loop_in(conversation.id, route, who):
                await self._ephemeral(body, who, f"{route} is already looped in.")
        finally:
            await self.tracker.done(_trigger(body))

    async def _on_send(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        try:
            if (clicked := await self._clicked(body)) is None:
                return
            _, _, conversation = clicked
            if (trigger := body.get("trigger_id")) is None or not isinstance(trigger, str):
                log.warning("slack_interaction_rejected", kind="block_actions", reason="no trigger_id to open a modal")
                return
            draft = await self.service.draft(conversation.id)
            view = blocks.send_modal(conversation.id, conversation.customer.name or "the customer", draft)
            await self.client.views_open(trigger_id=trigger, view=view)  # must be within 3 s
        except (SlackApiError, ClientError, TimeoutError) as exc:
            log.warning("views_open_failed", error=_error(exc))
        finally:
            await self.tracker.done(_trigger(body))

    async def _on_send_submitted(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        try:
            try:
                submission = payloads.Submission.model_validate(body)
            except ValidationError as exc:
                log.warning("slack_interaction_rejected", kind="view_submission", reason=payloads.reason(exc))
                await ack(response_action="errors", errors={blocks.MESSAGE_BLOCK: "Baton could not read this form."})
                return
            view = submission.view
            if not self._staff(submission.user):
                log.warning("slack_interaction_refused", user=submission.user.id, team=submission.user.team_id,
                            action=blocks.SEND_VIEW, reason="not a member of the installing workspace")
                await ack(response_action="errors", errors={blocks.MESSAGE_BLOCK: NOT_STAFF})
                return
            conversation = await self.service.store.get_conversation(view.private_metadata)
            if conversation is None:
                await ack(response_action="errors", errors={
                    blocks.MESSAGE_BLOCK: "This conversation is not in Baton's records any more."})
                return
            typed = view.state.values.get(blocks.MESSAGE_BLOCK, {}).get(blocks.MESSAGE_INPUT)
            text = typed.value or "" if typed is not None else ""
            if problems := self.service.check_staff_text(conversation, text):
                await ack(response_action="errors", errors={blocks.MESSAGE_BLOCK: "; ".join(problems)[:1900]})
                return
            await ack()
            who = submission.user.id
            person = await self._person(who, self.team_id, None)
            digest = hashlib.sha256(text.encode()).hexdigest()[:16]
            await self.service.send_to_customer(conversation.id, who, person.name, text,
                                                source=f"view:{view.id}:{digest}")
        finally:
            await self.tracker.done(_trigger(body))

    async def _on_resolve(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        try:
            if (clicked := await self._clicked(body)) is None:
                return
            who, _, conversation = clicked
            if not await self.service.resolve(conversation.id, who):
                await self._ephemeral(body, who, "This conversation is already resolved.")
        finally:
            await self.tracker.done(_trigger(body))

    async def _on_approve(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        """Approve & send: the bot's pending draft goes to the customer as it is (the first click wins)."""
        await ack()
        try:
            if (clicked := await self._clicked(body)) is None:
                return
            who, _, conversation = clicked
            person = await self._person(who, self.team_id, None)
            await self._problems(body, who, await self.service.approve_draft(conversation.id, who, person.name))
        finally:
            await self.tracker.done(_trigger(body))

    async def _on_reject(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        """Reject, with a reason from the menu: nothing goes to the customer; people carry on as with any
        handoff."""
        await ack()
        try:
            if (clicked := await self._clicked(body)) is None:
                return
            who, action, conversation = clicked
            if action.selected_option is None:
                log.warning("slack_interaction_rejected", kind="block_actions", action=action.action_id,
                            reason="a rejection without a chosen reason")
                await self._ephemeral(body, who, "Choose a reason from the Reject menu.")
                return
            _, reason = blocks.split_option(action.selected_option.value)
            await self._problems(body, who, await self.service.reject_draft(conversation.id, who, reason))
        finally:
            await self.tracker.done(_trigger(body))

    async def _on_escalate(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        """Escalate to the next tier of the conversation's route."""
        await ack()
        try:
            if (clicked := await self._clicked(body)) is None:
                return
            who, _, conversation = clicked
            await self._problems(body, who, await self.service.escalate_tier(conversation.id, who))
        finally:
            await self.tracker.done(_trigger(body))

    async def _on_unneeded(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        """A person marks the handoff as not needed (escalation accuracy)."""
        await ack()
        try:
            if (clicked := await self._clicked(body)) is None:
                return
            who, _, conversation = clicked
            problems = await self.service.mark_unneeded(conversation.id, who)
            await self._problems(body, who, problems)
            if not problems:
                await self._ephemeral(body, who, "Noted: this handoff was not needed. It counts in the escalation "
                                                 "accuracy of the reports.")
        finally:
            await self.tracker.done(_trigger(body))

    # ---- inbound: tags on a review post ----

    async def _on_promote(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        """A lead confirms a proposed promotion: staff proven, and one of ``BATON_LEADS`` when that is set."""
        await ack()
        try:
            try:
                click = payloads.Click.model_validate(body)
            except ValidationError as exc:
                log.warning("slack_interaction_rejected", kind="block_actions", action=blocks.PROMOTE,
                            reason=payloads.reason(exc))
                return
            who, action = click.user.id, click.actions[0] if click.actions else None
            leads = slack_home.leads()
            if not self._staff(click.user) or (leads and who not in leads):
                log.warning("slack_interaction_refused", user=who, action=blocks.PROMOTE, reason="not a lead")
                await self._ephemeral(body, who, NOT_STAFF if not self._staff(click.user)
                                      else "Only the support leads (BATON_LEADS) can promote an intent.")
                return
            intent, _, from_mode = (action.value or "").partition("|") if action else ("", "", "")
            problems = await self.service.promote(intent, who, from_mode=from_mode or None)
            await self._ephemeral(body, who, f"Nothing was done: {'; '.join(problems)}" if problems
                                  else f"Promoted {intent}: python -m bot autonomy shows it.")
        finally:
            await self.tracker.done(_trigger(body))

    async def _on_tag(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        """A tag from a review post's menu: staff proven as on the card, then the service judges it (the
        first tag stands); the post is redrawn with who tagged it, and a tag that blames the help center
        is told to its owners in the post's thread, with the article."""
        await ack()
        try:
            try:
                choice = payloads.TagChoice.model_validate(body)
            except ValidationError as exc:
                log.warning("slack_interaction_rejected", kind="block_actions", action=blocks.TAG,
                            reason=payloads.reason(exc))
                return
            who = choice.user.id
            if not self._staff(choice.user):
                log.warning("slack_interaction_refused", user=who, team=choice.user.team_id, action=blocks.TAG,
                            reason="not a member of the installing workspace")
                await self._ephemeral(body, who, NOT_STAFF)  # the same words whatever an outsider clicked
                return
            option = choice.actions[0].selected_option if choice.actions else None
            if option is None:
                log.warning("slack_interaction_rejected", kind="block_actions", action=blocks.TAG,
                            reason="a tag without a chosen option")
                await self._ephemeral(body, who, "Choose a tag from the menu.")
                return
            review, tag = blocks.split_option(option.value)
            if not (review.isascii() and review.isdigit() and int(review) < 2**31):
                log.warning("slack_interaction_refused", user=who, action=blocks.TAG, value=review,
                            reason="no such review item")
                await self._ephemeral(body, who, "This review post is not in Baton's records.")
                return
            tagged = await self.service.tag_review(int(review), who, tag)
            if tagged.problems:
                await self._problems(body, who, tagged.problems)
                return
            where = choice.container
            await self._redraw_review(int(review), where.channel_id, where.message_ts)
            if tagged.owner is not None:
                article = blocks.link(tagged.article, tagged.article) if tagged.article else \
                    "no article was cited (one may be missing)"
                text = (f"{blocks.mention(self.config.groups.get(tagged.owner)) or tagged.owner} the help center "
                        f"needs a look: {article} (tagged *{blocks.escape(tag)}* by {blocks.mention(who)})")
                try:
                    await self._post(channel=where.channel_id, thread_ts=where.message_ts, text=text)
                except (SlackApiError, ClientError, TimeoutError) as exc:
                    log.warning("review_owner_note_failed", review_id=review, error=_error(exc))
        finally:
            await self.tracker.done(_trigger(body))

    async def _redraw_review(self, review_id: int, channel: str, ts: str) -> None:
        """The review post drawn again from the store (tagged: the menu gives way to who tagged it)."""
        review = await self.service.store.review(review_id)
        found = await self.service.store.with_handoff(review["conversation_id"]) if review else None
        if review is None or found is None:
            return
        try:
            await self.client.chat_update(channel=channel, ts=ts, text=blocks.review_text(review),
                                          blocks=await self._review_blocks(review, *found))
        except (SlackApiError, ClientError, TimeoutError) as exc:
            log.warning("review_redraw_failed", review_id=review_id, error=_error(exc))

    async def _review_blocks(self, review: Mapping[str, Any], conversation: Conversation,
                             handoff: Handoff | None) -> list[dict[str, Any]]:
        card_link = None
        if handoff is not None and handoff.card_ts:
            card_link = await self._link(handoff.card_channel or self.config.internal_channel, handoff.card_ts)
        return blocks.review_post(review, self.service.policy.review.tags, platform=conversation.platform,
                                  thread_link=await self._permalink(conversation), card_link=card_link)

    async def _problems(self, body: dict[str, Any], user: str, problems: list[str]) -> None:
        """Why a click did nothing, told to the clicker alone."""
        if problems:
            await self._ephemeral(body, user, "Nothing was done: " + "; ".join(problems)[:2900])

    async def _ephemeral(self, body: dict[str, Any], user: str, text: str) -> None:
        """A reply only the clicker sees. It changes nothing, so it is sent at once, not queued."""
        places = ((body.get("channel"), "id"), (body.get("container"), "channel_id"))
        channel = next((place[key] for place, key in places
                        if isinstance(place, dict) and isinstance(place.get(key), str)), None)
        try:
            await self.client.chat_postEphemeral(channel=channel or self.config.internal_channel, user=user, text=text)
        except (SlackApiError, ClientError, TimeoutError) as exc:
            log.warning("ephemeral_failed", error=_error(exc))

    # ---- outbound: the outbox's transport ----

    async def deliver(self, parcel: Parcel) -> dict[str, Any] | None:
        """Perform one outbox action with the Web API; errors become the courier's retry signals."""
        try:
            return await self._deliver(parcel)
        except SlackApiError as exc:
            response = exc.response
            status = int(getattr(response, "status_code", None) or getattr(response, "status", None) or 0)
            error = _error(exc)
            if status == 429 or error == "ratelimited":
                headers = getattr(response, "headers", None) or {}
                raise RetryLater(f"rate limited ({error})", _retry_after(headers)) from None
            if status >= 500 or error in _TRANSIENT_ERRORS:
                raise Transient(f"HTTP {status} {error}") from None
            raise Undeliverable(error) from None
        except ClientConnectorError as exc:  # never reached Slack: certainly not posted
            raise Transient(f"{type(exc).__name__}: {exc}", ambiguous=False) from None
        except (ClientError, TimeoutError) as exc:
            raise Transient(f"{type(exc).__name__}: {exc}") from None

    async def find(self, parcel: Parcel) -> dict[str, Any] | None:
        """The post an earlier attempt at ``parcel`` made, found by the outbox id in its metadata: in the
        thread it went to, or for a new card (a new review post) in the internal (review) channel since the row
        was written. Card updates are safe to repeat: ``None``."""
        try:
            return await self._find(parcel)
        except SlackApiError as exc:
            response = exc.response
            if int(getattr(response, "status_code", 0) or 0) == 429 or _error(exc) == "ratelimited":
                raise RetryLater("rate limited while looking for an earlier post",
                                 _retry_after(getattr(response, "headers", None) or {})) from None
            raise Transient(f"looking for an earlier post: {_error(exc)}") from None
        except (ClientError, TimeoutError) as exc:
            raise Transient(f"looking for an earlier post: {type(exc).__name__}: {exc}") from None

    async def _find(self, parcel: Parcel) -> dict[str, Any] | None:
        action, conversation, handoff = parcel.action, parcel.conversation, parcel.handoff
        internal = self.config.internal_channel
        if action.kind in TO_CUSTOMER:
            found = await self._posted(parcel.id, conversation.channel, thread=conversation.thread)
            return {"ts": found} if found else None
        if isinstance(action, ReviewItem | AutonomyNotice):  # a new post in its channel, as a new card
            channel = self.config.leads if isinstance(action, AutonomyNotice) else self.config.review
            since = parcel.created_at.timestamp() - 60 if parcel.created_at else None
            found = await self._posted(parcel.id, channel, since=since)
            return {"channel": channel, "ts": found} if found else None
        if handoff is None or action.kind == "card":
            return None
        if action.kind == "open_handoff" and not handoff.card_ts:
            since = parcel.created_at.timestamp() - 60 if parcel.created_at else None
            found = await self._posted(parcel.id, internal, since=since)
            return {"card_channel": internal, "card_ts": found} if found else None
        if handoff.card_ts is None:
            return None
        found = await self._posted(parcel.id, handoff.card_channel or internal, thread=handoff.card_ts)
        return {"ts": found} if found else None

    async def _posted(self, outbox_id: int, channel: str, *, thread: str | None = None,
                      since: float | None = None) -> str | None:
        """The ts of the bot's message carrying ``outbox_id`` in its metadata, in a thread or (``since``) in
        the channel's recent history."""
        cursor: str | None = None
        for _page in range(20):
            if thread is not None:
                page = await self.client.conversations_replies(channel=channel, ts=thread, cursor=cursor, limit=200,
                                                               include_all_metadata=True)
            else:
                page = await self.client.conversations_history(channel=channel, cursor=cursor, limit=200,
                                                               include_all_metadata=True,
                                                               oldest=f"{since:.6f}" if since else None)
            for message in page.get("messages") or []:
                metadata = message.get("metadata") or {}
                if metadata.get("event_type") == METADATA_TYPE and \
                        str((metadata.get("event_payload") or {}).get("outbox_id")) == str(outbox_id):
                    return str(message["ts"])
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if not page.get("has_more") or not cursor:
                return None
        return None

    async def _deliver(self, parcel: Parcel) -> dict[str, Any] | None:
        action, conversation, handoff = parcel.action, parcel.conversation, parcel.handoff
        internal = self.config.internal_channel
        metadata = {"event_type": METADATA_TYPE, "event_payload": {"outbox_id": parcel.id}}
        if action.kind in TO_CUSTOMER:  # the only kinds that ever post in a customer channel
            assert isinstance(action, Reply | AskDetails | StaffReply)
            if conversation.channel == internal or conversation.channel not in self.config.customer_channels:
                raise Undeliverable(f"{conversation.channel} is not a customer channel")
            extra: dict[str, Any] = {}
            if isinstance(action, StaffReply) and action.author_name:
                extra["username"] = f"{action.author_name} (support)"
            # Escaped: a customer's words read back (a meeting name, say) can never become a broadcast.
            response = await self._post(channel=conversation.channel, thread_ts=conversation.thread,
                                        text=blocks.escape(action.text), metadata=metadata, **extra)
            return {"ts": response["ts"]}
        if isinstance(action, AutonomyNotice):  # told to the leads: their channel, else the review channel
            text, shown = blocks.autonomy_notice(action.intent, action.mode, action.previous, action.why,
                                                 confirmed=action.confirmed, figures=action.figures)
            response = await self._post(channel=self.config.leads, text=text, blocks=shown, metadata=metadata)
            return {"channel": self.config.leads, "ts": response["ts"]}
        if isinstance(action, ReviewItem):  # the QA review queue: with or without a handoff
            review = await self.service.store.review(action.review_id) or {
                "id": action.review_id, "reason": action.reason, "text": action.text}
            response = await self._post(channel=self.config.review, text=blocks.review_text(review),
                                        blocks=await self._review_blocks(review, conversation, handoff),
                                        metadata=metadata)
            return {"channel": self.config.review, "ts": response["ts"]}
        if handoff is None:
            return {"skipped": "no handoff for this conversation"}
        if action.kind == "open_handoff":
            if handoff.card_ts:  # raised while already handed over: say so in the thread
                why = "; ".join(handoff.brief.get("why_now") or action.reasons)
                text = (f"{blocks.mention(self.config.groups.get(action.route))} severity raised to "
                        f"*{action.severity}*: {blocks.escape(why)}")
                response = await self._post(channel=handoff.card_channel or internal, thread_ts=handoff.card_ts,
                                            text=text, metadata=metadata)
                return {"ts": response["ts"]}
            permalink = await self._permalink(conversation)
            response = await self._post(
                channel=internal, text=blocks.card_text(handoff, self.config.groups), metadata=metadata,
                blocks=self._card(handoff, permalink))
            return {"card_channel": internal, "card_ts": response["ts"]}
        if handoff.card_ts is None:
            return {"skipped": "the handoff card is not posted"}
        if action.kind == "card":
            permalink = await self._permalink(conversation)
            await self.client.chat_update(
                channel=handoff.card_channel or internal, ts=handoff.card_ts,
                text=blocks.card_text(handoff, self.config.groups),
                blocks=self._card(handoff, permalink))
            return {"ts": handoff.card_ts}
        if action.kind == "mirror":
            who = conversation.customer.name or conversation.customer.id
            where = "" if conversation.platform == PLATFORM else f" on {conversation.platform.capitalize()}"
            text = f"*{blocks.escape(who)}* (customer{where}, new message): {blocks.escape(action.text)}"
        elif action.kind == "note":
            parts = [blocks.mention(self.config.groups.get(action.route)) if action.route else "",
                     blocks.mention(action.actor) if action.actor else "", blocks.escape(action.text)]
            text = " ".join(p for p in parts if p)
        else:
            raise Undeliverable(f"no Slack delivery for {action.kind!r}")
        response = await self._post(channel=handoff.card_channel or internal, thread_ts=handoff.card_ts,
                                    text=text, metadata=metadata)
        return {"ts": response["ts"]}

    def _card(self, handoff: Handoff, permalink: str | None) -> list[dict[str, Any]]:
        return blocks.card(handoff, self.service.policy, self.config.groups, permalink=permalink,
                           next_tier=self.service.next_tier(handoff.conversation.route))

    async def _post(self, **message: Any) -> Any:
        """``chat.postMessage`` as Baton always posts: no link or media previews (a customer's link is
        never unfurled), no name linking (only explicit mentions, which are Baton's own, notify)."""
        return await self.client.chat_postMessage(unfurl_links=False, unfurl_media=False, link_names=False,
                                                  **message)

    async def permalink(self, conversation: Conversation) -> str | None:
        return await self._permalink(conversation)

    async def _permalink(self, conversation: Conversation) -> str | None:
        """A link to the customer's thread, on whichever platform it is."""
        if conversation.platform != PLATFORM:
            other = self.application.platforms.get(conversation.platform)
            return await other.permalink(conversation) if other is not None else None
        return await self._link(conversation.channel, conversation.thread)

    async def _link(self, channel: str, ts: str) -> str | None:
        """A Slack message's permalink (``None`` when Slack cannot give it), looked up once: it never changes."""
        if (known := self._links.get((channel, ts))) is not None:
            return known
        try:
            link = str((await self.client.chat_getPermalink(channel=channel, message_ts=ts))["permalink"])
        except (SlackApiError, ClientError, TimeoutError, KeyError):
            return None
        remember(self._links, (channel, ts), link, limit=2_000)
        return link


def _unreadable(body: bytes, content_type: str | None) -> str | None:
    """Why a signed request body cannot be read (``None`` when it can): Slack sends UTF-8 JSON (events)
    or a form whose ``payload`` is JSON (interactions). Parsed exactly as Bolt will parse it, then checked
    for the shapes Bolt's own routing reads without checking (it raises on anything else)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "the body is not UTF-8"
    try:
        parsed = parse_body(text, content_type)
    except (ValueError, RecursionError):
        return "the body does not parse"
    if not isinstance(parsed, dict) or not isinstance(parsed.get("type"), str):
        return "not a Slack event or interaction"
    return _unroutable(parsed)


_IDS = (str, dict, type(None))
"""What Bolt accepts for ``user``, ``channel``, ``team`` and ``enterprise`` (an id, or an object with one)."""


def _unroutable(body: dict[str, Any]) -> str | None:
    """What in a parsed payload Bolt's context building and listener matching would raise on."""
    if not isinstance(body.get("authorizations"), list | type(None)) or \
            not all(isinstance(a, dict) for a in body.get("authorizations") or []):
        return "authorizations is not a list of objects"
    event = body.get("event", {})
    if not isinstance(event, dict):
        return "event is not an object"
    for where, payload in (("", body), ("event.", event)):
        for name in ("user", "channel", "team", "enterprise"):
            if not isinstance(payload.get(name), _IDS):
                return f"{where}{name} is neither an id nor an object"
    kind = body["type"]
    if kind == "block_actions":
        actions = body.get("actions")
        if not (isinstance(actions, list) and actions and
                all(isinstance(a, dict) and isinstance(a.get("action_id"), str) for a in actions)):
            return "block_actions without a list of actions with ids"
    elif kind in ("view_submission", "view_closed"):
        view = body.get("view")
        if not (isinstance(view, dict) and isinstance(view.get("callback_id"), str)):
            return f"{kind} without a view with a callback id"
    elif kind in ("shortcut", "message_action") and not isinstance(body.get("callback_id"), str):
        return f"{kind} without a callback id"
    elif kind in ("block_suggestion", "dialog_suggestion") and not isinstance(body.get("action_id"), str):
        return f"{kind} without an action id"
    return None


def _trigger(body: Mapping[str, Any]) -> str | None:
    """An interaction's key for the tracker: its trigger id (a modal's submission: the view's id)."""
    view = body.get("view")
    for key in (body.get("trigger_id"), view.get("id") if isinstance(view, dict) else None):
        if isinstance(key, str) and key:
            return key
    return None


def _error(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if response is not None:
        with contextlib.suppress(Exception):
            return str(response.get("error") or f"HTTP {response.status_code}")
        return f"HTTP {getattr(response, 'status', '?')}"
    return f"{type(exc).__name__}: {exc}"


def _retry_after(headers: Mapping[str, Any]) -> float:
    for key, value in headers.items():
        if key.lower() == "retry-after":
            with contextlib.suppress(ValueError):
                return max(0.0, float(value))
    return 1.0
