"""Discord: customers in a company's Discord servers; staff work on the same internal Slack card.

A thin edge over one discord.py ``AutoShardedClient``. Gateway messages in the configured support
channels become platform-free messages; the bot answers in a thread on the customer's message (in a
forum, in the post). What the outbox sends a Discord customer goes out through discord.py's REST
client and its rate-limit buckets. Nothing here decides anything.

A message is read as the customer sees it (:func:`bot.text.compose`): what they wrote, the message they
reply to, what they forward (its snapshot), their files, stickers and embeds, cut at Discord's longest
message. Nothing the bot posts can notify anyone: every post is sent with no allowed mentions and no
link previews, and its text is made inert (a zero-width space after the ``@`` of every broadcast and
mention), so it stays harmless wherever it is copied.

No message is lost to a reconnect, a restart or a crash: a message is stored in the inbox before the
cursor (the last message seen in each channel and thread, kept in the database) moves past it, and
after every READY and RESUMED what came after the cursors is fetched (Discord's own list of active
threads, not the client's cache, says which threads have anything new); the inbox's unique message id
makes sure nothing is answered twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
import discord
import structlog
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.model import TO_CUSTOMER, AskDetails, Conversation, Message, Person, Reply, Role, StaffReply
from bot.outbox import Parcel, RetryLater, Transient, Undeliverable
from bot.platform import Platform, PlatformConfigError, remember
from bot.service import thread_of
from bot.settings import Settings
from bot.store import Inbound
from bot.text import attachment, compose

if TYPE_CHECKING:
    from bot.app import Application

log = structlog.get_logger(__name__)

PLATFORM = "discord"
DEFAULT_API_URL = "https://discord.com/api/v10"
MESSAGE_LIMIT = 2000
"""The longest message the bot may post."""
TEXT_LIMIT = 4000
"""The longest message a customer can write (with Nitro): what they send is cut here before triage."""
THREAD_ARCHIVE_MINUTES: Literal[10080] = 10080  # a week: a quiet support thread stays in the channel's list
RECENT = timedelta(days=14)
"""Resolved conversations active this recently are still caught up (a CSAT answer, a reopening)."""
THREAD_ALREADY_CREATED = 160004
UNKNOWN_MESSAGE = 10008
_SNOWFLAKE = re.compile(r"^\d{15,21}$")
_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")
_CHANNEL_MENTION = re.compile(r"<#(\d+)>")
_CUSTOM_EMOJI = re.compile(r"<a?:(\w+):\d+>")
_CUSTOMER_TYPES = (discord.MessageType.default, discord.MessageType.reply)
# What Discord turns into a notification: @everyone, @here, <@123>, <@!123>, <@&123> (anywhere in a word).
_PING = re.compile(r"@(everyone|here|[!&]?\d{15,25}(?=>))")

INTENT_HELP = ("turn on the Message Content intent: Discord Developer Portal -> your application -> Bot -> "
               "Privileged Gateway Intents -> Message Content Intent (a verified bot in 100 or more servers "
               "must also be approved for it)")


class DiscordConfigError(PlatformConfigError):
    """The Discord configuration cannot work; the message says what to fix."""


@dataclass(frozen=True)
class DiscordConfig:
    token: str
    channels: frozenset[int]
    """The support channels served (text, announcement or forum channels), by ID."""
    staff_roles: frozenset[int]
    """A member holding any of these roles is staff: their reply in a thread takes the conversation over."""
    api_url: str = DEFAULT_API_URL
    gateway_url: str | None = None

    def __repr__(self) -> str:  # never print the token
        return (f"DiscordConfig(channels={sorted(self.channels)}, staff_roles={sorted(self.staff_roles)}, "
                f"api_url={self.api_url!r})")

    @classmethod
    def from_settings(cls, settings: Settings) -> DiscordConfig:
        """Validate the configuration, listing every problem with what to set."""
        problems = []
        if settings.discord_token is None:
            problems.append("DISCORD_TOKEN is not set: the bot token from the Developer Portal (Bot -> Token)")
        for variable, values, what in (("BATON_DISCORD_CHANNELS", settings.discord_channels, "support channels"),
                                       ("BATON_DISCORD_STAFF_ROLES", settings.discord_staff_roles, "staff roles")):
            if not values:
                why = ("where customers are served" if what == "support channels"
                       else "without them every member, your staff included, counts as a customer")
                problems.append(f"{variable} is not set: the IDs of the {what}, comma-separated ({why}; "
                                "Discord: Settings -> Advanced -> Developer Mode, then right-click -> Copy ID)")
            problems += [f"{variable}: {v!r} is not a Discord ID (a number such as 1234567890123456789)"
                         for v in values if not _SNOWFLAKE.match(v)]
        if problems:
            raise DiscordConfigError("the Discord configuration is incomplete:\n  - " + "\n  - ".join(problems))
        assert settings.discord_token is not None
        return cls(token=settings.discord_token.get_secret_value(),
                   channels=frozenset(int(c) for c in settings.discord_channels),
                   staff_roles=frozenset(int(r) for r in settings.discord_staff_roles),
                   api_url=(settings.discord_api_url or DEFAULT_API_URL).rstrip("/"),
                   gateway_url=settings.discord_gateway_url)


def intents() -> discord.Intents:
    """Servers, their messages and the messages' text (Message Content, a privileged intent). Not members."""
    wanted = discord.Intents.none()
    wanted.guilds = True
    wanted.guild_messages = True
    wanted.message_content = True
    return wanted


class BatonClient(discord.AutoShardedClient):
    """discord.py's client, sharded as Discord advises; it only hands events to the adapter."""

    def __init__(self, adapter: DiscordAdapter, **options: Any) -> None:
        # A rate limit longer than max_ratelimit_timeout comes back as RateLimited: the outbox parks the
        # row in the database instead of holding a worker.
        options.setdefault("max_ratelimit_timeout", 30.0)
        super().__init__(intents=intents(), allowed_mentions=discord.AllowedMentions.none(),
                         chunk_guilds_at_startup=False, **options)
        self.adapter = adapter
        # A message discord.py cannot read must not end the connection (and Baton with it): it is repaired
        # where Discord is known to send less than discord.py expects, or else logged and dropped.
        parsers = self._connection.parsers
        for event in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
            parsers[event] = _tolerant(event, parsers[event])

    async def setup_hook(self) -> None:
        await self.adapter.checks()

    async def on_message(self, message: discord.Message) -> None:
        await self.adapter.on_message(message)

    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        await self.adapter.on_edit(payload.message, payload.data.get("edited_timestamp"))

    async def on_thread_create(self, thread: discord.Thread) -> None:
        self.adapter.remember_thread(thread.id, thread.parent_id)

    async def on_shard_disconnect(self, shard_id: int) -> None:
        await self.adapter.mark()

    async def on_shard_ready(self, shard_id: int) -> None:
        self.adapter.catch_up(f"ready:{shard_id}")

    async def on_shard_resumed(self, shard_id: int) -> None:
        self.adapter.catch_up(f"resumed:{shard_id}")


def from_app(app: Application) -> DiscordAdapter:
    """The registry's factory: Discord from the application's settings (raises :class:`DiscordConfigError`)."""
    return DiscordAdapter(app, DiscordConfig.from_settings(app.settings))


class DiscordAdapter(Platform):
    """The Discord edge: ``setup()`` logs in and checks, ``start()`` connects the gateway in the
    background (the application ends when it gives up for good), ``stop()``.

    It is the outbox's transport for Discord customers and gives the Slack card its link."""

    name = PLATFORM
    gateway = True

    def __init__(self, app: Application, config: DiscordConfig, *, workers: int = 8, **client_options: Any) -> None:
        super().__init__(app)
        self.service = app.service
        self.inbox = app.inbox
        self.config = config
        self.client = BatonClient(self, **client_options)
        self.tracker = app.inbox.tracker
        self.content_missing = 0
        """Messages that arrived with no content at all: the Message Content intent is not granted."""
        self.workers = workers
        self._working = asyncio.Semaphore(workers)
        self._forums: set[int] = set()
        self._guilds: dict[int, int] = {}
        """Served channel -> its server."""
        self._parents: OrderedDict[int, int | None] = OrderedDict()
        """Thread (or any channel seen) -> the served channel it belongs to; ``None``: not served."""
        self._threads_made: OrderedDict[int, None] = OrderedDict()
        self._roles: OrderedDict[tuple[int, int], frozenset[int]] = OrderedDict()
        self._connection: asyncio.Task[None] | None = None
        self._catching_up: asyncio.Task[None] | None = None
        self._again = False
        self._missed: dict[str, int] = {}
        """Per place, just before the oldest message that could not be stored: caught up from there."""
        self._marks: asyncio.Future[dict[str, int]] | None = None
        """The cursors as they were when the gateway was lost: a live message handled before the
        catch-up starts must not make it skip what was missed before it. Asked for at once, so that a
        catch-up that starts before the answer comes waits for it (and does not leave it to the next)."""
        self.retry_after = 2.0
        """Seconds between catch-ups while messages that could not be stored are waiting."""
        self.catch_ups = 0
        """Catch-ups finished; each is marked ``catch-up:<n>`` on the tracker."""

    # ---- lifecycle ----

    async def setup(self) -> None:
        """Log in and check the configuration (raises :class:`DiscordConfigError`)."""
        Route.BASE = self.config.api_url
        if self.config.gateway_url:
            DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.config.gateway_url)
        try:
            await self.client.login(self.config.token)
        except discord.LoginFailure:
            await self.client.close()
            raise DiscordConfigError("Discord refused the bot token: check DISCORD_TOKEN") from None
        except (aiohttp.ClientError, OSError, discord.HTTPException) as exc:
            await self.client.close()
            raise DiscordConfigError(f"cannot reach the Discord API at {self.config.api_url}: {exc}") from None
        except DiscordConfigError:
            await self.client.close()
            raise

    async def start(self) -> None:
        """Connect the gateway in the background; :attr:`closed` ends when it gives up for good."""
        self._connection = asyncio.create_task(self._connect(), name="baton-discord-gateway")
        self._connection.add_done_callback(self._gone)

    def _gone(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled():
            self.application.close_with(task.exception())

    def healthy(self) -> bool:
        return self.ready and not self.client.is_closed()

    @property
    def closed(self) -> asyncio.Task[None]:
        assert self._connection is not None, "start() first"
        return self._connection

    async def _connect(self) -> None:
        try:
            await self.client.connect(reconnect=True)
        except discord.PrivilegedIntentsRequired:
            raise DiscordConfigError("Discord refused the gateway connection because the bot asks for the "
                                     f"Message Content intent, which it is not allowed: {INTENT_HELP}") from None
        except discord.ConnectionClosed as exc:  # what discord.py does not retry: a bad token, bad shards
            raise DiscordConfigError(f"Discord closed the gateway for good (code {exc.code}): {exc.reason}") from None

    async def stop(self) -> None:
        self.ready = False
        for task in (self._catching_up, self._connection, self._marks):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self.client.close()

    async def checks(self) -> None:
        """After login, before the gateway: the intent, and whether each support channel can work."""
        flags = self.client.application_flags
        if not (flags.gateway_message_content or flags.gateway_message_content_limited):
            raise DiscordConfigError(f"the bot cannot read what customers write: {INTENT_HELP}")
        if self.config.gateway_url and self.client.shard_count is None:
            # discord.py takes the gateway's address from GET /gateway/bot unless the shard count is set.
            self.client.shard_count, _url, _limits = await self.client.http.get_bot_gateway()
        problems = []
        cursors = await self.mark()
        for channel_id in sorted(self.config.channels):
            try:
                channel = await self.client.fetch_channel(channel_id)
            except (discord.NotFound, discord.Forbidden) as exc:
                problems.append(f"BATON_DISCORD_CHANNELS: the bot cannot see channel {channel_id} "
                                f"({exc.text or exc.status}); check the ID and the bot's View Channel permission")
                continue
            if not isinstance(channel, discord.TextChannel | discord.ForumChannel):
                problems.append(f"BATON_DISCORD_CHANNELS: {channel_id} is a {type(channel).__name__}; serve text, "
                                "announcement or forum channels")
                continue
            self._guilds[channel_id] = channel.guild.id
            if isinstance(channel, discord.ForumChannel):
                self._forums.add(channel_id)
            if str(channel_id) not in cursors:  # first start: what was written before Baton came is history
                newest = max(channel.last_message_id or 0, _snowflake(datetime.now(UTC)))
                await self.service.store.advance_cursor(PLATFORM, str(channel_id), newest)
        if problems:
            raise DiscordConfigError("the Discord configuration cannot work:\n  - " + "\n  - ".join(problems))
        self.ready = True
        log.info("discord_ready", bot_user=self.client.user and self.client.user.id,
                 channels=sorted(self.config.channels), forums=sorted(self._forums))

    # ---- inbound ----

    async def on_message(self, message: discord.Message) -> None:
        bound = log.bind(event_id=str(message.id), channel=str(message.channel.id))
        worked = False
        try:
            async with self._working:
                worked = await self._message(message, bound)
        except Exception:
            bound.exception("discord_message_failed", guild=message.guild and message.guild.id,
                            author=message.author.id, content=message.content)  # all of it, so nothing is lost
            if not worked:  # not stored (the database is down?): fetch it again once it can be
                self._missed[str(message.channel.id)] = min(self._missed.get(str(message.channel.id), message.id),
                                                            message.id - 1)
                self.catch_up("inbox-unavailable")
        finally:
            if not worked:  # the inbox's worker marks what it worked on
                await self.tracker.done(str(message.id))

    async def _message(self, message: discord.Message, bound: Any) -> bool:
        place = await self._place(message.channel)
        if place is None:
            return False  # not a support channel, nor a thread in one: not ours
        parent, thread = place
        me = self.client.user
        if message.author.bot or message.webhook_id or (me is not None and message.author.id == me.id) \
                or message.type not in _CUSTOMER_TYPES:
            await self._seen(message, parent)
            return False  # bots (ourselves included), webhooks, system messages: on purpose, no reply and no loop
        translated = await self.to_message(message, parent=parent, thread=thread)
        if translated is None:
            self.content_missing += 1
            bound.error("discord_message_content_missing", author=message.author.id,
                        hint=f"a customer's message arrived with no text: {INTENT_HELP}")
            return False
        # Durable before the cursor moves past it: a crash from here on leaves it in the inbox.
        inbound = await self._store(translated, "message")
        await self._seen(message, parent)
        if inbound is None:
            bound.info("duplicate_event_dropped")
            return False
        await self.inbox.work(inbound)
        return True

    async def _store(self, message: Message, kind: str) -> Inbound | None:
        inbound_id = await self.service.receive(message, kind=kind)
        if inbound_id is None:
            return None
        return Inbound(id=inbound_id, platform=PLATFORM, event_id=message.event_id, kind=kind,
                       payload=message.model_dump(mode="json"), thread_key=thread_of(message))

    async def on_edit(self, message: discord.Message, edited_at: str | None) -> None:
        """A customer edited a message: decided again only if it raises the risk. An update without an
        edit time (Discord adding a link preview, a thread, a flag) is not an edit."""
        try:
            if not edited_at:
                return
            place = await self._place(message.channel)
            if place is None or message.author.bot or message.webhook_id:
                return
            translated = await self.to_message(message, parent=place[0], thread=place[1],
                                               event_id=f"{message.id}:edit:{edited_at}")
            if translated is not None and translated.author.role is Role.customer:
                inbound = await self._store(translated, "edit")
                if inbound is not None:
                    await self.inbox.work(inbound)
        except Exception:
            log.exception("discord_edit_failed", event_id=str(message.id), content=message.content)
        finally:
            await self.tracker.done(f"{message.id}:edit")

    async def _seen(self, message: discord.Message, parent: int) -> None:
        await self.service.store.advance_cursor(PLATFORM, str(message.channel.id), message.id)
        if parent in self._forums:  # a forum's cursor is its newest post (a post's id is its thread's)
            await self.service.store.advance_cursor(PLATFORM, str(parent), message.channel.id)

    async def to_message(self, message: discord.Message, *, parent: int, thread: int | None,
                         event_id: str | None = None) -> Message | None:
        """A Discord message as a platform-free :class:`Message`; ``None`` when it carries nothing at all
        (no text, file, sticker, embed, poll or forwarded message), which is what Discord sends a bot that
        lacks the Message Content intent."""
        if not _has_content(message):
            return None
        guild = message.guild.id if message.guild else self._guilds.get(parent, 0)
        return Message(platform=PLATFORM, workspace=str(guild), channel=str(parent),
                       thread=str(thread if thread is not None else message.id),
                       author=await self._person(message, guild), text=self.text_of(message),
                       at=message.created_at, event_id=event_id or str(message.id))

    def text_of(self, message: discord.Message) -> str:
        """Everything the customer sent, as they see it (:func:`bot.text.compose`): the message they reply
        to, what they wrote (our own mention dropped, others' names shown), what they forward, then a line
        per file, sticker and embed; cut at Discord's longest message."""
        files = _files(message)
        forwards: list[tuple[str | None, str]] = []
        for snapshot in message.message_snapshots:  # a forward: the author of the original is not sent
            forwards.append((None, self._readable(snapshot.content, message)))
            files += _files(snapshot)
        replying_to = None
        reference = message.reference
        if reference is not None and reference.type is discord.MessageReferenceType.reply \
                and isinstance(reference.resolved, discord.Message):  # not available: no quote
            quoted = reference.resolved
            replying_to = (quoted.author.display_name,
                           compose(self._readable(quoted.content, quoted), files=_files(quoted),
                                   forwards=[(None, self._readable(s.content, quoted))
                                             for s in quoted.message_snapshots]))
        text = self._readable(message.content, message)
        if message.poll is not None and message.poll.question:
            text = f"{text}\n{message.poll.question}".strip()
        return compose(text, files=files, forwards=forwards, replying_to=replying_to, limit=TEXT_LIMIT)

    def _readable(self, content: str, message: discord.Message) -> str:
        """Discord markup as people see it: ``@Name`` for a mention (ours dropped), ``#channel``, ``:emoji:``."""
        if not content:
            return ""
        me = self.client.user.id if self.client.user else None
        users = {m.id: m.display_name for m in message.mentions}
        roles = {r.id: r.name for r in message.role_mentions}
        channels = {c.id: getattr(c, "name", str(c.id)) for c in message.channel_mentions}
        text = _USER_MENTION.sub(lambda m: "" if int(m.group(1)) == me else "@" + users.get(int(m.group(1)), "user"),
                                 content)
        text = _ROLE_MENTION.sub(lambda m: "@" + roles.get(int(m.group(1)), "role"), text)
        text = _CHANNEL_MENTION.sub(lambda m: "#" + channels.get(int(m.group(1)), "channel"), text)
        return _CUSTOM_EMOJI.sub(r":\1:", text)

    async def _person(self, message: discord.Message, guild: int) -> Person:
        """Staff when they hold a staff role. A gateway message carries the member's roles; a fetched
        one (catching up) does not, so the member is looked up once and kept."""
        author = message.author
        if isinstance(author, discord.Member):
            roles = frozenset(role.id for role in author.roles)
        else:
            roles = await self._member_roles(guild, author.id)
        staff = bool(roles & self.config.staff_roles)
        return Person(id=str(author.id), name=author.display_name, role=Role.staff if staff else Role.customer)

    async def _member_roles(self, guild: int, user: int) -> frozenset[int]:
        key = (guild, user)
        if (cached := self._roles.get(key)) is None:
            try:
                member = await self.client.http.get_member(guild, user)
                cached = frozenset(int(r) for r in member.get("roles", ()))
            except discord.NotFound:
                cached = frozenset()  # left the server: a customer's message all the same
            remember(self._roles, key, cached)
        return cached

    async def _place(self, channel: Any) -> tuple[int, int | None] | None:
        """(served channel, thread or ``None`` for the channel itself) for a message's channel, or
        ``None`` when it is not served. A thread discord.py has not cached is looked up once."""
        if channel.id in self.config.channels:
            return channel.id, None
        if isinstance(channel, discord.Thread):
            parent: int | None = channel.parent_id
        elif isinstance(channel, discord.abc.GuildChannel | discord.abc.PrivateChannel):
            return None  # another channel of the server, or a direct message
        elif channel.id in self._parents:
            parent = self._parents[channel.id]
        else:
            try:
                fetched = await self.client.fetch_channel(channel.id)
                parent = fetched.parent_id if isinstance(fetched, discord.Thread) else None
            except (discord.NotFound, discord.Forbidden):
                parent = None
            self.remember_thread(channel.id, parent)
        return (parent, channel.id) if parent in self.config.channels else None

    def remember_thread(self, thread: int, parent: int | None) -> None:
        remember(self._parents, thread, parent)

    # ---- catching up after a reconnect or a restart ----

    async def mark(self) -> dict[str, int]:
        """Remember how far Baton had read, now that the gateway is lost (or not yet connected)."""
        if self._marks is None:
            self._marks = asyncio.ensure_future(self.service.store.cursors_of(PLATFORM))
        return await asyncio.shield(self._marks)

    def catch_up(self, reason: str) -> None:
        """Fetch and handle what was missed, in the background; one catch-up at a time, and one more if
        asked again meanwhile."""
        if self._catching_up is not None and not self._catching_up.done():
            self._again = True
            return
        self._catching_up = asyncio.create_task(self._catch_up_loop(reason), name="baton-discord-catch-up")

    async def _catch_up_loop(self, reason: str) -> None:
        while True:
            self._again = False
            failed = False
            try:
                handled = await self.catch_up_now()
                log.info("discord_caught_up", reason=reason, messages=handled)
            except Exception as exc:
                failed = True
                log.warning("discord_catch_up_failed", reason=reason, error=f"{type(exc).__name__}: {exc}")
            self.catch_ups += 1
            await self.tracker.done(f"catch-up:{self.catch_ups}")
            if failed and self._missed:  # what could not be stored is tried again until it is
                await asyncio.sleep(self.retry_after)
                continue
            if not self._again:
                return

    async def catch_up_now(self) -> int:
        """Handle every message after the last one seen: in the support channels, in the threads of recent
        conversations, and in threads and forum posts opened since. Returns how many messages were fetched."""
        marking, self._marks = self._marks, None
        missed, self._missed = self._missed, {}
        marks: dict[str, int] | None = None
        if marking is not None:
            try:
                marks = await marking
            except Exception as exc:  # not known: the cursors as they are now
                log.warning("discord_marks_unavailable", error=f"{type(exc).__name__}: {exc}")
        try:
            cursors = await self.service.store.cursors_of(PLATFORM)
            # Which threads have anything new is decided on the stored cursors and Discord's own list of
            # active threads (the last message in each), not on the client's cache, which a resume leaves stale.
            listed = await self._active_threads()
        except Exception:  # the next catch-up starts from the same place
            if self._marks is None and marks is not None:
                self._marks = marking
            self._missed = {**missed, **self._missed}
            raise
        if marks is not None:  # what was read since the gateway was lost does not count yet
            cursors = {place: min(seen, marks[place]) for place, seen in cursors.items() if place in marks}
        for place, before in missed.items():  # messages that could not be stored: fetched again
            cursors[place] = min(cursors.get(place, before), before)
        places: dict[int, int] = {}
        for channel_id in self.config.channels - self._forums:
            if (seen := cursors.get(str(channel_id))) is not None:
                places[channel_id] = seen
        since = datetime.now(UTC) - RECENT
        conversations = set()
        for conversation in await self.service.store.recent_conversations(PLATFORM, since=since):
            if not conversation.thread.isdigit():  # recorded history (replay --record): no Discord thread to read
                continue
            thread = int(conversation.thread)
            conversations.add(thread)
            seen = cursors.get(str(thread), thread)  # a thread's first message comes after its starter
            if not _quiet(listed, thread, seen):
                places[thread] = seen
        for thread, listing in listed.items():  # threads and forum posts Baton has no conversation in
            if thread in conversations or thread in places:
                continue
            seen = cursors.get(str(thread))
            if seen is None:  # never read: only what came after the last message read in its channel
                newest = cursors.get(str(listing["parent_id"]))
                if newest is None:
                    continue  # a first start: what is there is history
                seen = max(thread - 1, newest)
            if not _quiet(listed, thread, seen):
                places[thread] = seen
        # Places are caught up side by side (as many as messages are worked on at once); within a
        # place, in the order the messages were written.
        lanes = asyncio.Semaphore(self.workers)

        async def one(place: int, seen: int) -> int:
            fetched = 0
            async with lanes:
                try:
                    async for message in self._history(place, after=seen):
                        fetched += 1
                        await self.on_message(message)
                except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:  # the next catch-up retries
                    log.warning("discord_catch_up_incomplete", place=place, error=str(exc))
                except Exception as exc:  # a message discord.py cannot read: the other places go on
                    log.error("discord_catch_up_incomplete", place=place, error=f"{type(exc).__name__}: {exc}")
            return fetched

        return sum(await asyncio.gather(*(one(place, seen) for place, seen in places.items())))

    async def _active_threads(self) -> dict[int, dict[str, Any]]:
        """The active threads (forum posts included) of the served channels, as Discord lists them now."""
        listed: dict[int, dict[str, Any]] = {}
        for guild in sorted(set(self._guilds.values())):
            active = await self.client.http.get_active_threads(guild)
            for thread in active.get("threads", ()):
                parent = int(thread.get("parent_id") or 0)
                if parent in self.config.channels:
                    listed[int(thread["id"])] = {**thread, "parent_id": parent}
                    self.remember_thread(int(thread["id"]), parent)
        return listed

    async def _history(self, place: int, *, after: int) -> AsyncIterator[discord.Message]:
        cached = self.client.get_channel(place)
        channel: discord.abc.Messageable
        if isinstance(cached, discord.TextChannel | discord.Thread):
            channel = cached
        else:
            parent = self._parents.get(place) or place
            channel = self.client.get_partial_messageable(place, guild_id=self._guilds.get(parent))
        try:
            async for message in channel.history(limit=None, after=discord.Object(after), oldest_first=True):
                yield message
        except (discord.NotFound, discord.Forbidden) as exc:
            log.warning("discord_history_unavailable", place=place, error=exc.text or exc.status)

    # ---- outbound: the outbox's transport for Discord customers ----

    async def permalink(self, conversation: Conversation) -> str:
        """The customer's first message (for a forum post, the post)."""
        channel = conversation.thread if int(conversation.channel) in self._forums else conversation.channel
        web = yarl.URL(self.config.api_url).origin()  # https://discord.com/api/v10 -> https://discord.com
        return f"{web}/channels/{conversation.workspace}/{channel}/{conversation.thread}"

    async def deliver(self, parcel: Parcel) -> dict[str, Any] | None:
        """Post one outbox action in the customer's thread; errors become the courier's retry signals.
        discord.py waits out the rate-limit buckets itself; a longer wait is handed back to the outbox."""
        try:
            return await self._deliver(parcel)
        except discord.RateLimited as exc:
            raise RetryLater("rate limited", exc.retry_after) from None
        except discord.HTTPException as exc:
            if exc.status == 429:
                raise RetryLater(f"rate limited ({exc.text})", 5.0) from None
            if exc.status >= 500:
                raise Transient(f"HTTP {exc.status} {exc.text}") from None
            raise Undeliverable(f"HTTP {exc.status} (code {exc.code}): {exc.text}") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Transient(f"{type(exc).__name__}: {exc}") from None

    async def _deliver(self, parcel: Parcel) -> dict[str, Any] | None:
        action, conversation = parcel.action, parcel.conversation
        if action.kind not in TO_CUSTOMER:
            raise Undeliverable(f"Discord delivers only what reaches the customer, not {action.kind!r}")
        assert isinstance(action, Reply | AskDetails | StaffReply)
        if conversation.platform != PLATFORM or int(conversation.channel) not in self.config.channels:
            raise Undeliverable(f"{conversation.channel} is not a served Discord channel")
        thread = await self._thread_for(conversation)
        text = action.text
        if isinstance(action, StaffReply) and action.author_name:
            text = f"**{discord.utils.escape_markdown(action.author_name)}** (support): {text}"
        text = inert(text)
        channel = self.client.get_partial_messageable(thread, guild_id=int(conversation.workspace),
                                                      type=discord.ChannelType.public_thread)
        sent = None
        for index, part in enumerate(_chunks(text, MESSAGE_LIMIT)):
            # The outbox row's id as the nonce (discord.py sends enforce_nonce): a retry of a post that
            # went through returns the first message instead of posting it again. One nonce per part.
            sent = await channel.send(part, allowed_mentions=discord.AllowedMentions.none(), suppress_embeds=True,
                                      nonce=f"{parcel.id}.{index}")
        assert sent is not None
        return {"message_id": str(sent.id), "thread": str(thread)}

    async def _thread_for(self, conversation: Conversation) -> int:
        """The thread to answer in, opened on the customer's message the first time. A thread opened
        on a message has that message's id; a forum post, or a thread the customer opened by hand, is a
        thread already."""
        thread, parent = int(conversation.thread), int(conversation.channel)
        if parent in self._forums or thread in self._threads_made or self._parents.get(thread) == parent \
                or isinstance(self.client.get_channel(thread), discord.Thread):
            return thread
        name = inert(f"{conversation.customer.name or 'Customer'} · support")[:100]
        try:
            await self.client.http.start_thread_with_message(parent, thread, name=name,
                                                             auto_archive_duration=THREAD_ARCHIVE_MINUTES)
        except discord.HTTPException as exc:
            if exc.code == UNKNOWN_MESSAGE and await self._is_thread_of(thread, parent):
                pass  # a thread opened by hand, with no message to hang on: answer in it
            elif exc.code != THREAD_ALREADY_CREATED:
                raise
        remember(self._threads_made, thread, None)
        self.remember_thread(thread, parent)
        return thread

    async def _is_thread_of(self, thread: int, parent: int) -> bool:
        try:
            channel = await self.client.fetch_channel(thread)
        except (discord.NotFound, discord.Forbidden):
            return False
        return isinstance(channel, discord.Thread) and channel.parent_id == parent


def _tolerant(event: str, parse: Callable[[Any], None]) -> Callable[[Any], None]:
    def tolerant(data: Any) -> None:
        try:
            parse(_repaired(data))
        except Exception as exc:
            log.error("discord_event_unreadable", discord_event=event, event_id=data.get("id"),
                      channel=data.get("channel_id"), error=f"{type(exc).__name__}: {exc}")
    return tolerant


_SNAPSHOT_FIELDS: dict[str, Any] = {"type": 0, "content": "", "embeds": [], "attachments": [], "edited_timestamp": None}


def _repaired(data: Any) -> Any:
    """The message with what discord.py requires of a forward's snapshot: the snapshot of a replied-to
    forward comes without ``type`` (discord/discord-api-docs#7814), which discord.py cannot read."""
    for message in (data, data.get("referenced_message")) if isinstance(data, dict) else ():
        if not isinstance(message, dict):
            continue
        for snapshot in message.get("message_snapshots") or ():
            inner = snapshot.get("message") if isinstance(snapshot, dict) else None
            if isinstance(inner, dict):
                for key, value in _SNAPSHOT_FIELDS.items():
                    inner.setdefault(key, list(value) if isinstance(value, list) else value)
                inner.setdefault("timestamp", message.get("timestamp"))
    return data


def inert(text: str) -> str:
    """``text`` that notifies nobody wherever it is posted or copied: a zero-width space after the ``@``
    of every @everyone, @here, user and role mention (it reads the same); and no masked link
    (``[Reset password](https://…)``) that a customer's words read back could turn into the bot's own."""
    return _PING.sub("@\u200b\\1", text).replace("](", "]\\(")


def _has_content(message: discord.Message) -> bool:
    return bool(message.content or message.attachments or message.embeds or message.stickers or message.poll
                or message.message_snapshots)


def _files(message: discord.Message | discord.MessageSnapshot) -> list[str]:
    """One line per file (name and type), sticker and embed (its title, or its link) of a message."""
    lines = [attachment(a.filename, a.content_type) for a in message.attachments]
    lines += [attachment(s.name, mark="sticker") for s in message.stickers]
    lines += [attachment(label, mark="embed") for e in message.embeds if (label := e.title or e.url)]
    return list(dict.fromkeys(lines))


def _quiet(listed: dict[int, dict[str, Any]], thread: int, seen: int) -> bool:
    """Discord lists ``thread`` as active with nothing after ``seen`` (an archived thread is asked)."""
    last = listed.get(thread, {}).get("last_message_id")
    return last is not None and int(last) <= seen


def _chunks(text: str, size: int) -> Iterable[str]:
    """``text`` in parts of at most ``size`` characters, cut at a line break or space where possible."""
    while len(text) > size:
        cut = max(text.rfind("\n", 0, size), text.rfind(" ", 0, size))
        cut = cut if cut > size // 2 else size
        yield text[:cut].rstrip()
        text = text[cut:].lstrip()
    yield text


def _snowflake(at: datetime) -> int:
    """The smallest Discord ID of something made at ``at``."""
    return discord.utils.time_snowflake(at)
