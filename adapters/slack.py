"""Slack: customers in Slack Connect channels, staff on handoff cards in an internal channel.

A thin edge over one Bolt ``AsyncApp``: events and interactions are translated into platform-free
messages and service calls; the outbox's actions are translated into Web API calls. Nothing here
decides anything. ``SlackAdapter.setup`` checks the workspace (as discord.py's ``setup_hook``), and
``SlackAdapter.web_app`` serves ``POST /slack/events`` (events and interactivity) and ``GET /healthz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from aiohttp import ClientError, web
from dotenv import dotenv_values
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters import slack_blocks as blocks
from adapters.tracker import Tracker
from bot.model import TO_CUSTOMER, AskDetails, Conversation, Message, Person, Reply, Role, StaffReply
from bot.outbox import Courier, Parcel, RetryLater, Router, Transient, Transport, Undeliverable
from bot.policy import Policy
from bot.service import Service
from bot.settings import Settings

log = structlog.get_logger(__name__)

PLATFORM = "slack"
DEFAULT_API_URL = "https://slack.com/api/"
_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{2,}$")
_GROUP_ID = re.compile(r"^[SUWCG][A-Z0-9]{2,}$")
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_LINK = re.compile(r"<(https?://[^|>]+)(?:\|([^>]*))?>")
_IGNORED_SUBTYPES = {"message_deleted", "channel_join", "channel_leave", "group_join", "group_leave",
                     "channel_topic", "channel_purpose", "channel_name", "pinned_item", "unpinned_item",
                     "bot_message", "ekm_access_denied", "channel_archive", "channel_unarchive",
                     "reminder_add", "tombstone", "huddle_thread", "sh_room_created"}
_TRANSIENT_ERRORS = {"internal_error", "fatal_error", "service_unavailable", "request_timeout"}


class SlackConfigError(Exception):
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

    def __repr__(self) -> str:  # never print the credentials
        return (f"SlackConfig(customer_channels={sorted(self.customer_channels)}, "
                f"internal_channel={self.internal_channel!r}, api_url={self.api_url!r})")

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
                   groups=groups)


def route_groups(policy: Policy, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each route's Slack id: ``BATON_ROUTE_<NAME>`` from the environment (or ``.env``), else the policy's."""
    if environ is None:
        environ = {**{k: v for k, v in dotenv_values(".env").items() if v}, **os.environ}
    return {name: (environ.get(f"BATON_ROUTE_{name.upper()}") or route.slack).strip()
            for name, route in policy.routes.items()}


class CustomerSide(Transport, Protocol):
    """Another platform's customer side (Discord): delivers what reaches its customers, and links to
    a conversation for the card."""

    def permalink(self, conversation: Conversation) -> str | None: ...


class SlackAdapter:
    """The Slack edge: customers in Slack Connect channels and, for every platform, the staff side.

    Construct, ``await setup()``, then ``start()`` and serve ``web_app()``. ``elsewhere`` names the
    other platforms' customer sides (``{"discord": ...}``): their handoffs get the same internal card,
    and what staff send goes back through them."""

    def __init__(self, service: Service, config: SlackConfig, *, client: AsyncWebClient | None = None,
                 courier_options: Mapping[str, Any] | None = None, workers: int = 8,
                 elsewhere: Mapping[str, CustomerSide] | None = None) -> None:
        self.service = service
        self.config = config
        self.client = client or AsyncWebClient(token=config.bot_token, base_url=config.api_url, timeout=10)
        async def authorize() -> AuthorizeResult:  # one workspace, known from auth.test at setup
            return AuthorizeResult(enterprise_id=None, team_id=self.team_id, bot_token=config.bot_token,
                                   bot_user_id=self.bot_user_id, bot_id=self.bot_id)

        # Bolt's own self-event filter is off: _message drops the bot's messages itself, after the
        # tracker has seen them, so every event that passed the signature check is accounted for.
        self.app = AsyncApp(signing_secret=config.signing_secret, client=self.client, authorize=authorize,
                            process_before_response=False, ignoring_self_events_enabled=False)
        self.elsewhere = dict(elsewhere or {})
        self.courier = Courier(service.store, Router(self, {PLATFORM: self, **self.elsewhere}),
                               delivered=service.delivered, **dict(courier_options or {}))
        service.wake = self.courier.kick
        self.tracker = Tracker()
        self.team_id: str | None = None
        self.bot_user_id: str | None = None
        self.bot_id: str | None = None
        self.ready = False
        self.health: list[Callable[[], bool]] = []
        """More conditions for ``/healthz`` (the other platforms' adapters being connected)."""
        self._people: OrderedDict[str, Person] = OrderedDict()
        self._lookups: dict[str, asyncio.Future[Person]] = {}
        self._working = asyncio.Semaphore(workers)
        """Events worked on at once, after their acknowledgement: a burst queues here, cheaply, rather
        than as hundreds of tasks contending for the database and the event loop."""
        self._timers: asyncio.Task[None] | None = None
        self._register()

    # ---- lifecycle ----

    async def setup(self) -> None:
        """Who we are, and whether the configured channels can work. Raises :class:`SlackConfigError`."""
        try:
            auth = await self.client.auth_test()
        except SlackApiError as exc:
            raise SlackConfigError(f"Slack refused the bot token ({_error(exc)}): check SLACK_BOT_TOKEN") from None
        except (ClientError, TimeoutError) as exc:
            raise SlackConfigError(f"cannot reach the Slack API at {self.config.api_url}: {exc}") from None
        self.team_id, self.bot_user_id, self.bot_id = auth["team_id"], auth["user_id"], auth.get("bot_id")
        internal = await self._channel(self.config.internal_channel, "BATON_INTERNAL_CHANNEL")
        if internal.get("is_ext_shared") or internal.get("is_pending_ext_shared"):
            raise SlackConfigError(
                f"BATON_INTERNAL_CHANNEL {self.config.internal_channel} is shared with another organisation "
                "(Slack Connect): handoff cards and internal notes would reach people outside the company. "
                "Use a channel with no external members.")
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
                 customer_channels=sorted(self.config.customer_channels), internal=self.config.internal_channel)

    async def _channel(self, channel: str, variable: str) -> dict[str, Any]:
        try:
            return dict((await self.client.conversations_info(channel=channel))["channel"])
        except SlackApiError as exc:
            raise SlackConfigError(f"{variable}: Slack cannot show channel {channel} to the bot ({_error(exc)}); "
                                   "check the ID and invite the bot with /invite @Baton") from None

    def start(self) -> None:
        """Start delivering the outbox (what a previous run left undelivered goes first) and the SLA timer."""
        self.courier.start()
        if self._timers is None:
            self._timers = asyncio.create_task(self._sla_loop(), name="baton-sla")

    async def stop(self) -> None:
        if self._timers is not None:
            self._timers.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timers
            self._timers = None
        await self.courier.stop()

    async def _sla_loop(self, poll: float = 60.0) -> None:
        while True:
            try:
                await self.service.check_sla()
                upcoming = await self.service.store.next_sla()
            except Exception:
                log.exception("sla_check_failed")
                upcoming = None
            wait = poll if upcoming is None else min(poll, max(1.0, (upcoming - datetime.now(UTC)).total_seconds()))
            await asyncio.sleep(wait)

    def web_app(self) -> web.Application:
        """``POST /slack/events`` (events and interactivity, signature-checked by Bolt) and ``GET /healthz``."""
        app = web.Application()
        app.router.add_post("/slack/events", self._http)
        app.router.add_get("/healthz", self._health)
        return app

    async def _http(self, request: web.Request) -> web.Response:
        response = await self.app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(response)

    async def _health(self, _request: web.Request) -> web.Response:
        if not self.ready or not all(check() for check in self.health):
            return web.json_response({"ok": False, "status": "starting"}, status=503)
        return web.json_response({"ok": True})

    # ---- inbound: events ----

    def _register(self) -> None:
        self.app.event("message")(self._on_message)
        self.app.event("app_mention")(self._on_message)
        self.app.action(blocks.CLAIM)(self._on_claim)
        self.app.action(re.compile(f"^{blocks.LOOP_IN}:"))(self._on_loop_in)
        self.app.action(blocks.SEND)(self._on_send)
        self.app.view(blocks.SEND_VIEW)(self._on_send_submitted)
        self.app.action(blocks.RESOLVE)(self._on_resolve)

    async def _on_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        key = body.get("event_id")
        bound = log.bind(event_id=key, channel=event.get("channel"))
        try:
            async with self._working:
                if key and not await self.service.store.record_event(f"{PLATFORM}-event", key):
                    bound.info("duplicate_event_dropped")  # a retry of an event already taken
                    return
                await self._message(event, bound)
        except Exception:
            bound.exception("slack_event_failed", event=event)  # the whole event, so nothing is lost
            if key:
                await self.service.store.forget_event(f"{PLATFORM}-event", key)
        finally:
            await self.tracker.done(key)

    async def _message(self, event: dict[str, Any], bound: Any) -> None:
        channel = event.get("channel")
        if channel == self.config.internal_channel:
            return  # plain messages in the internal channel and its threads stay internal
        if channel not in self.config.customer_channels:
            bound.info("message_in_unserved_channel")
            return
        subtype = event.get("subtype")
        if subtype == "message_changed":
            edited = dict(event.get("message") or {})
            if not edited.get("user") or edited.get("bot_id") or \
                    (event.get("previous_message") or {}).get("text") == edited.get("text"):
                return  # a bot's edit, or an unfurl / attachment change
            edited.setdefault("channel", channel)
            stamp = (edited.get("edited") or {}).get("ts") or event.get("event_ts") or event.get("ts")
            message = await self._translate(edited, event_id=f"{channel}:{edited.get('ts')}:edit:{stamp}")
            if message is not None and message.author.role is Role.customer:
                outcome = await self.service.handle_edit(message)
                bound.info("edit", ignored=outcome.ignored)
            return
        if subtype in _IGNORED_SUBTYPES or event.get("bot_id") or event.get("user") in (None, self.bot_user_id):
            return  # deletions, joins, bots (ourselves included): on purpose, no reply and no loop
        if subtype not in (None, "thread_broadcast", "file_share", "me_message"):
            bound.info("message_subtype_ignored", subtype=subtype)
            return
        message = await self._translate(event, event_id=f"{channel}:{event.get('ts')}")
        if message is None:
            bound.warning("malformed_message_event", keys=sorted(event))
            return
        outcome = await self.service.handle(message)
        if outcome.ignored:
            bound.info("message_ignored", reason=outcome.ignored)

    async def _translate(self, event: dict[str, Any], *, event_id: str) -> Message | None:
        """A Slack message event as a platform-free :class:`Message`; ``None`` if it lacks what one needs."""
        ts, user, channel = event.get("ts"), event.get("user"), event.get("channel")
        if not (isinstance(ts, str) and isinstance(user, str) and isinstance(channel, str)):
            return None
        try:
            at = datetime.fromtimestamp(float(ts), UTC)
        except ValueError:
            return None
        team = event.get("user_team") or event.get("team") or (event.get("user_profile") or {}).get("team")
        person = await self._person(user, team, event.get("user_profile"))
        return Message(platform=PLATFORM, workspace=self.team_id or "", channel=channel,
                       thread=event.get("thread_ts") or ts, author=person, text=self._text(event.get("text") or ""),
                       at=at, event_id=event_id)

    def _text(self, text: str) -> str:
        """Slack's markup as the customer wrote it: our own mention dropped, links and entities unwrapped."""
        text = _MENTION.sub(lambda m: "" if m.group(1) == self.bot_user_id else f"@{m.group(1)}", text)
        text = _LINK.sub(lambda m: m.group(2) or m.group(1), text)
        return html.unescape(text).strip()

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
        name, tz = None, None
        try:
            info = (await self.client.users_info(user=user))["user"]
            name = (info.get("profile") or {}).get("display_name") or info.get("real_name") or info.get("name")
            tz, team = info.get("tz"), team or info.get("team_id")
        except (SlackApiError, ClientError, TimeoutError) as exc:
            log.warning("users_info_failed", user=user, error=_error(exc))  # carry on without name and zone
        if not name and profile:
            name = profile.get("display_name") or profile.get("real_name") or profile.get("name")
        staff = team is not None and team == self.team_id
        person = Person(id=user, name=name or None, role=Role.staff if staff else Role.customer,
                        organisation=None if staff else team, timezone=tz)
        self._people[user] = person
        while len(self._people) > 5000:
            self._people.popitem(last=False)
        return person

    # ---- inbound: interactions on the card ----

    def _staff_only(self, body: dict[str, Any]) -> str | None:
        user = body.get("user") or {}
        if user.get("team_id") not in (None, self.team_id):
            return None
        return str(user.get("id"))

    async def _on_claim(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        try:
            if (who := self._staff_only(body)) is None:
                return
            result = await self.service.claim(str(action["value"]), who)
            if not result.won:
                owner = blocks.mention(result.owner) if result.owner else "nobody: the conversation is closed"
                await self._ephemeral(body, who, f"Already claimed by {owner}.")
        finally:
            await self.tracker.done(body.get("trigger_id"))

    async def _on_loop_in(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        try:
            if (who := self._staff_only(body)) is None:
                return
            route = str(action["action_id"]).split(":", 1)[1]
            if not await self.service.loop_in(str(action["value"]), route, who):
                await self._ephemeral(body, who, f"{route} is already looped in.")
        finally:
            await self.tracker.done(body.get("trigger_id"))

    async def _on_send(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        try:
            conversation_id = str(action["value"])
            conversation = await self.service.store.get_conversation(conversation_id)
            if conversation is None or self._staff_only(body) is None:
                return
            draft = await self.service.draft(conversation_id)
            view = blocks.send_modal(conversation_id, conversation.customer.name or "the customer", draft)
            await self.client.views_open(trigger_id=body["trigger_id"], view=view)  # must be within 3 s
        except SlackApiError as exc:
            log.warning("views_open_failed", error=_error(exc))
        finally:
            await self.tracker.done(body.get("trigger_id"))

    async def _on_send_submitted(self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        try:
            conversation = await self.service.store.get_conversation(view.get("private_metadata", ""))
            who = self._staff_only(body)
            text = (((view.get("state") or {}).get("values") or {}).get(blocks.MESSAGE_BLOCK) or {}) \
                .get(blocks.MESSAGE_INPUT, {}).get("value") or ""
            if conversation is None or who is None:
                await ack(response_action="errors", errors={blocks.MESSAGE_BLOCK: "This conversation is gone."})
                return
            if problems := self.service.check_staff_text(conversation, text):
                await ack(response_action="errors", errors={blocks.MESSAGE_BLOCK: "; ".join(problems)[:1900]})
                return
            await ack()
            person = await self._person(who, self.team_id, None)
            digest = hashlib.sha256(text.encode()).hexdigest()[:16]
            await self.service.send_to_customer(conversation.id, who, person.name, text,
                                                source=f"view:{view.get('id')}:{digest}")
        finally:
            await self.tracker.done(body.get("trigger_id") or view.get("id"))

    async def _on_resolve(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        try:
            if (who := self._staff_only(body)) is None:
                return
            if not await self.service.resolve(str(action["value"]), who):
                await self._ephemeral(body, who, "This conversation is already resolved.")
        finally:
            await self.tracker.done(body.get("trigger_id"))

    async def _ephemeral(self, body: dict[str, Any], user: str, text: str) -> None:
        """A reply only the clicker sees. It changes nothing, so it is sent at once, not queued."""
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        try:
            await self.client.chat_postEphemeral(channel=channel or self.config.internal_channel, user=user, text=text)
        except SlackApiError as exc:
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
        except (ClientError, TimeoutError) as exc:
            raise Transient(f"{type(exc).__name__}: {exc}") from None

    async def _deliver(self, parcel: Parcel) -> dict[str, Any] | None:
        action, conversation, handoff = parcel.action, parcel.conversation, parcel.handoff
        internal = self.config.internal_channel
        if action.kind in TO_CUSTOMER:  # the only kinds that ever post in a customer channel
            assert isinstance(action, Reply | AskDetails | StaffReply)
            if conversation.channel == internal or conversation.channel not in self.config.customer_channels:
                raise Undeliverable(f"{conversation.channel} is not a customer channel")
            extra: dict[str, Any] = {}
            if isinstance(action, StaffReply) and action.author_name:
                extra["username"] = f"{action.author_name} (support)"
            response = await self.client.chat_postMessage(channel=conversation.channel, thread_ts=conversation.thread,
                                                          text=action.text, unfurl_links=False, **extra)
            return {"ts": response["ts"]}
        if handoff is None:
            return {"skipped": "no handoff for this conversation"}
        if action.kind == "open_handoff":
            if handoff.card_ts:  # raised while already handed over: say so in the thread
                text = (f"{blocks.mention(self.config.groups.get(action.route))} severity raised to "
                        f"*{action.severity}*: " + "; ".join(handoff.brief.get("why_now") or action.reasons))
                response = await self.client.chat_postMessage(channel=handoff.card_channel or internal,
                                                              thread_ts=handoff.card_ts, text=text)
                return {"ts": response["ts"]}
            permalink = await self._permalink(conversation)
            response = await self.client.chat_postMessage(
                channel=internal, text=blocks.card_text(handoff, self.config.groups),
                blocks=blocks.card(handoff, self.service.policy, self.config.groups, permalink=permalink))
            return {"card_channel": internal, "card_ts": response["ts"]}
        if handoff.card_ts is None:
            return {"skipped": "the handoff card is not posted"}
        if action.kind == "card":
            permalink = await self._permalink(conversation)
            await self.client.chat_update(
                channel=handoff.card_channel or internal, ts=handoff.card_ts,
                text=blocks.card_text(handoff, self.config.groups),
                blocks=blocks.card(handoff, self.service.policy, self.config.groups, permalink=permalink))
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
        response = await self.client.chat_postMessage(channel=handoff.card_channel or internal,
                                                      thread_ts=handoff.card_ts, text=text)
        return {"ts": response["ts"]}

    async def _permalink(self, conversation: Conversation) -> str | None:
        """A link to the customer's thread, on whichever platform it is."""
        if conversation.platform != PLATFORM:
            other = self.elsewhere.get(conversation.platform)
            return other.permalink(conversation) if other is not None else None
        try:
            return str((await self.client.chat_getPermalink(channel=conversation.channel,
                                                            message_ts=conversation.thread))["permalink"])
        except (SlackApiError, ClientError, TimeoutError):
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
