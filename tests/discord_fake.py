"""A local fake of Discord: the REST endpoints Baton uses and a gateway, on 127.0.0.1.

The real discord.py client logs in against it (``Route.BASE`` and ``DEFAULT_GATEWAY`` point here),
receives HELLO, READY and GUILD_CREATE, heartbeats, and is sent MESSAGE_CREATE and the like as Discord
sends them: the payloads below follow the shapes of recorded Discord payloads (API v10). A message can
also be put in a channel's history without being sent on the gateway, as if the bot had been away;
``reconnect()`` makes the client RESUME its session. A recorded event (``replay``) is kept as Discord
would keep it (a message in its channel's history, a thread among the channels) and sent as it was
recorded. REST answers carry exactly ``Content-Type: application/json`` (discord.py rejects
``; charset=utf-8``).

Creating a message honours ``nonce`` with ``enforce_nonce`` as Discord documents it: a second create with the
same nonce, by the same author in the same channel within ``nonce_window`` seconds, answers the FIRST message
(same id, 200) and creates nothing (discord.py 2.7 sends ``enforce_nonce: true`` with every ``send``). Fault
modes: ``fail`` (the request is refused) and ``fail_after`` (the request takes effect, the answer is lost: a
5xx, or the connection closed without an answer).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import discord
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

TOKEN = "discord-bot-token-for-tests.secret"
GUILD = 1180000000000000001
APP = BOT = 1180000000000000002
SUPPORT = 1180000000000000010  # a text channel served
FORUM = 1180000000000000011  # a forum channel served
LOUNGE = 1180000000000000012  # a text channel not served
STAFF_ROLE = 1180000000000000020
MEMBER_ROLE = 1180000000000000021
DANA, RIO, SAM = 1180000000000000100, 1180000000000000101, 1180000000000000102
MALLORY = 1180000000000000103
"""A customer whose display name is made to notify everyone (for injection tests)."""
PEOPLE: dict[int, dict[str, Any]] = {
    DANA: {"username": "dana.w", "global_name": "Dana", "roles": [MEMBER_ROLE]},
    RIO: {"username": "rio_k", "global_name": "Rio", "roles": []},
    SAM: {"username": "sam.support", "global_name": "Sam (Notewise)", "roles": [STAFF_ROLE, MEMBER_ROLE]},
    MALLORY: {"username": "mallory", "global_name": f"@everyone @here <@&{STAFF_ROLE}> <@{SAM}>", "roles": []},
}
MESSAGE_CONTENT = 1 << 15
CONTENT_LIMITED = 1 << 19
NONCE_MAX = 25
"""Discord's longest nonce (an integer or a string of at most 25 characters)."""


def iso(at: datetime | None = None) -> str:
    return (at or datetime.now(UTC)).isoformat()


def user(uid: int) -> dict[str, Any]:
    if uid == BOT:
        return {"id": str(BOT), "username": "Baton", "global_name": None, "discriminator": "4242", "avatar": None,
                "bot": True, "public_flags": 0, "flags": 0}
    person = PEOPLE[uid]
    return {"id": str(uid), "username": person["username"], "global_name": person["global_name"],
            "discriminator": "0", "avatar": None, "public_flags": 0, "flags": 0, "banner": None,
            "accent_color": None, "avatar_decoration_data": None, "clan": None}


def member(uid: int) -> dict[str, Any]:
    return {"roles": [str(r) for r in PEOPLE.get(uid, {}).get("roles", [])], "nick": None, "avatar": None,
            "premium_since": None, "joined_at": "2025-03-01T12:00:00.000000+00:00", "pending": False,
            "communication_disabled_until": None, "flags": 0, "mute": False, "deaf": False}


def text_channel(cid: int, name: str, *, last_message_id: int | None = None) -> dict[str, Any]:
    return {"id": str(cid), "type": 0, "guild_id": str(GUILD), "name": name, "position": 1, "parent_id": None,
            "topic": "Ask us anything", "nsfw": False, "last_message_id": str(last_message_id) if last_message_id
            else None, "rate_limit_per_user": 0, "permission_overwrites": [], "flags": 0}


def forum_channel(cid: int, name: str) -> dict[str, Any]:
    return {"id": str(cid), "type": 15, "guild_id": str(GUILD), "name": name, "position": 2, "parent_id": None,
            "topic": None, "nsfw": False, "last_message_id": None, "rate_limit_per_user": 0,
            "permission_overwrites": [], "flags": 0, "available_tags": [], "default_reaction_emoji": None,
            "default_sort_order": None, "default_forum_layout": 0, "default_thread_rate_limit_per_user": 0}


def thread_channel(tid: int, parent: int, name: str, owner: int) -> dict[str, Any]:
    return {"id": str(tid), "type": 11, "guild_id": str(GUILD), "parent_id": str(parent), "owner_id": str(owner),
            "name": name, "last_message_id": None, "message_count": 0, "member_count": 1, "rate_limit_per_user": 0,
            "flags": 0, "total_message_sent": 0,
            "thread_metadata": {"archived": False, "auto_archive_duration": 10080, "archive_timestamp": iso(),
                                "locked": False, "create_timestamp": iso()}}


def role(rid: int, name: str, position: int) -> dict[str, Any]:
    return {"id": str(rid), "name": name, "color": 0, "hoist": False, "icon": None, "unicode_emoji": None,
            "position": position, "permissions": "1071698660929", "managed": False, "mentionable": False,
            "flags": 0}


@dataclass
class Sent:
    channel: int
    body: dict[str, Any]
    id: int
    at: float = field(default_factory=time.perf_counter)


def invalid_form(field_name: str, code: str, message: str) -> dict[str, Any]:
    """Discord's 400 for a field it refuses (code 50035)."""
    return {"message": "Invalid Form Body", "code": 50035,
            "errors": {field_name: {"_errors": [{"code": code, "message": message}]}}}


@dataclass
class FakeDiscord:
    """Discord's REST endpoints Baton uses and its gateway, on a free loopback port."""

    app_flags: int = CONTENT_LIMITED
    allow_message_content: bool = True
    channels: dict[int, dict[str, Any]] = field(default_factory=lambda: {
        SUPPORT: text_channel(SUPPORT, "support"), FORUM: forum_channel(FORUM, "help-forum"),
        LOUNGE: text_channel(LOUNGE, "lounge")})
    history: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)
    threads_started: list[int] = field(default_factory=list)
    thread_requests: list[dict[str, Any]] = field(default_factory=list)
    """The body of every request to open a thread on a message (refused ones too)."""
    requests: list[tuple[str, str]] = field(default_factory=list)
    identifies: int = 0
    resumes: int = 0
    server: TestServer | None = None
    _sockets: list[web.WebSocketResponse] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _last_id: int = 0
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _failures: dict[str, list[int]] = field(default_factory=dict)
    _lost: dict[str, list[int | None]] = field(default_factory=dict)
    replayed: list[Sent] = field(default_factory=list)
    """Creates answered with an earlier message because of their nonce (nothing was created)."""
    nonce_window: float = 180.0
    """How long a nonce is enforced ("the past few minutes" in Discord's documentation)."""
    clock: Callable[[], float] = time.monotonic
    """The time for the nonce window (a test may pass its own to move time without sleeping)."""
    _nonces: dict[tuple[int, int, str], tuple[float, dict[str, Any]]] = field(default_factory=dict)

    async def start(self) -> tuple[str, str]:
        """Serve; returns (the REST base, as ``DISCORD_API_URL``; the gateway URL)."""
        app = web.Application()
        app.router.add_get("/gw", self._gateway)
        app.router.add_route("*", "/api/v10/{path:.*}", self._rest)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return str(self.server.make_url("/api/v10")), self.gateway_url

    @property
    def gateway_url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/gw")).replace("http://", "ws://")

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self.server is not None:
            await self.server.close()

    # ---- what tests do ----

    def next_id(self) -> int:
        self._last_id = max(self._last_id + 1, discord.utils.time_snowflake(datetime.now(UTC)))
        return self._last_id

    def message(self, channel: int, author: int, content: str, *, as_bot: bool = False, **extra: Any) -> dict[str, Any]:
        """A message as the gateway's MESSAGE_CREATE carries it (REST history omits guild_id and member)."""
        mid = extra.pop("id", None) or self.next_id()
        writer = {**user(author), "bot": True} if as_bot else user(author)
        return {"id": str(mid), "type": 0, "content": content, "channel_id": str(channel), "author": writer,
                "attachments": [], "embeds": [], "mentions": [], "mention_roles": [], "mention_everyone": False,
                "pinned": False, "tts": False, "timestamp": iso(), "edited_timestamp": None, "flags": 0,
                "components": [], "nonce": str(mid + 7), "guild_id": str(GUILD), "member": member(author),
                **extra}

    async def say(self, author: int, content: str, *, channel: int = SUPPORT, live: bool = True,
                  **extra: Any) -> dict[str, Any]:
        """``author`` writes in ``channel``: kept in its history and, if ``live``, sent on the gateway."""
        payload = self.message(channel, author, content, **extra)
        self.history.setdefault(channel, []).append(payload)
        if channel in self.channels:
            self.channels[channel]["last_message_id"] = payload["id"]
        if live:
            await self.dispatch("MESSAGE_CREATE", payload)
        return payload

    async def replay(self, event: str, payload: dict[str, Any]) -> None:
        """Send a recorded gateway event, after keeping what it makes as Discord keeps it: a created message
        in its channel's history (its channel's ``last_message_id`` moves), a created thread among the
        channels."""
        if event == "MESSAGE_CREATE":
            channel = int(payload["channel_id"])
            kept = {k: v for k, v in payload.items() if k not in ("guild_id", "member")}
            self.history.setdefault(channel, []).append(kept)
            if channel in self.channels:
                self.channels[channel]["last_message_id"] = payload["id"]
        elif event == "THREAD_CREATE":
            self.channels[int(payload["id"])] = {k: v for k, v in payload.items() if k != "newly_created"}
        await self.dispatch(event, payload)

    async def forum_post(self, author: int, title: str, content: str, *, live: bool = True) -> int:
        """A new post in the forum: THREAD_CREATE, then its first message, which has the thread's id."""
        tid = self.next_id()
        thread = thread_channel(tid, FORUM, title, author)
        thread["newly_created"] = True
        self.channels[tid] = thread
        if live:
            await self.dispatch("THREAD_CREATE", thread)
        await self.say(author, content, channel=tid, live=live, id=tid)
        return tid

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        for ws in list(self._sockets):
            await ws.send_str(json.dumps({"op": 0, "t": event, "s": next(self._seq), "d": data}))

    async def reconnect(self) -> None:
        """Ask the client to reconnect (op 7): it resumes its session and gets RESUMED."""
        for ws in list(self._sockets):
            await ws.send_str(json.dumps({"op": 7, "d": None}))

    def fail(self, route: str, status: int, *, times: int = 1) -> None:
        """Answer the next ``times`` requests whose path ends with ``route`` (e.g. ``/messages``) with ``status``."""
        self._failures.setdefault(route, []).extend([status] * times)

    def fail_after(self, route: str, status: int | None = 503, *, times: int = 1) -> None:
        """The next ``times`` successful POSTs whose path ends with ``route`` take effect (the message exists,
        the gateway hears of it) but the client is answered ``status`` instead, or, with ``status=None``, the
        connection is closed without an answer. discord.py retries a 500, 502, 504 or 524 by itself (after
        1 s, 3 s, ...) with the same payload; a 503 or a closed connection reaches the caller at once."""
        self._lost.setdefault(route, []).extend([status] * times)

    def messages_in(self, channel: int) -> list[dict[str, Any]]:
        """The channel's messages as the fake keeps them, oldest first (those whose answer was lost too)."""
        return sorted(self.history.get(channel, []), key=lambda m: int(m["id"]))

    def with_nonce(self, nonce: str | int, channel: int | None = None) -> list[dict[str, Any]]:
        """The messages created with ``nonce``: delivered once means exactly one."""
        return [m for c, kept in self.history.items() if channel is None or c == channel for m in kept
                if m.get("author", {}).get("id") == str(BOT) and str(m.get("nonce")) == str(nonce)]

    def posts(self, channel: int | None = None) -> list[Sent]:
        return [s for s in self.sent if channel is None or s.channel == channel]

    async def wait_for(self, predicate: Callable[[FakeDiscord], bool], timeout: float = 10.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self)), timeout)

    # ---- gateway ----

    def guild_create(self) -> dict[str, Any]:
        # Only active threads: "archived threads are not synced up-front via the gateway".
        threads = [c for c in self.channels.values() if c["type"] == 11
                   and not c.get("thread_metadata", {}).get("archived")]
        return {
            "id": str(GUILD), "name": "Notewise Community", "icon": None, "splash": None, "discovery_splash": None,
            "owner_id": str(SAM), "afk_channel_id": None, "afk_timeout": 300, "verification_level": 1,
            "default_message_notifications": 1, "explicit_content_filter": 2, "mfa_level": 0,
            "system_channel_id": None, "system_channel_flags": 0, "rules_channel_id": None, "vanity_url_code": None,
            "description": None, "banner": None, "premium_tier": 0, "premium_subscription_count": 0,
            "preferred_locale": "en-US", "public_updates_channel_id": None, "nsfw_level": 0,
            "premium_progress_bar_enabled": False, "features": ["COMMUNITY"], "emojis": [], "stickers": [],
            "roles": [role(GUILD, "@everyone", 0), role(MEMBER_ROLE, "Customers", 1), role(STAFF_ROLE, "Staff", 2)],
            "joined_at": "2025-01-01T00:00:00.000000+00:00", "large": False, "unavailable": False,
            "member_count": 4, "voice_states": [], "members": [{**member(BOT), "user": user(BOT)}],
            "channels": [c for c in self.channels.values() if c["type"] != 11], "threads": threads,
            "presences": [], "stage_instances": [], "guild_scheduled_events": [], "soundboard_sounds": [],
            "max_members": 500000, "application_id": None,
        }

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250, "_trace": ["fake-gw"]}}))
        try:
            async for frame in ws:
                if frame.type is not WSMsgType.TEXT:
                    continue
                payload = json.loads(frame.data)
                op, data = payload.get("op"), payload.get("d")
                if op == 1:
                    await ws.send_str(json.dumps({"op": 11}))
                elif op == 2:
                    if data.get("token") != TOKEN:
                        await ws.close(code=4004, message=b"Authentication failed.")
                        break
                    if data.get("intents", 0) & MESSAGE_CONTENT and not self.allow_message_content:
                        await ws.close(code=4014, message=b"Disallowed intent(s).")
                        break
                    async with self._changed:
                        self.identifies += 1
                        self._sockets.append(ws)
                        self._changed.notify_all()
                    await ws.send_str(json.dumps({"op": 0, "t": "READY", "s": next(self._seq), "d": {
                        "v": 10, "user": user(BOT), "guilds": [{"id": str(GUILD), "unavailable": True}],
                        "session_id": "fake-session", "resume_gateway_url": self.gateway_url,
                        "shard": data.get("shard", [0, 1]), "application": {"id": str(APP), "flags": self.app_flags},
                        "private_channels": [], "relationships": [], "presences": [], "guild_join_requests": [],
                        "user_settings": {}, "_trace": ["fake-gw"]}}))
                    await ws.send_str(json.dumps({"op": 0, "t": "GUILD_CREATE", "s": next(self._seq),
                                                  "d": self.guild_create()}))
                elif op == 6:
                    async with self._changed:
                        self.resumes += 1
                        self._sockets.append(ws)
                        self._changed.notify_all()
                    await ws.send_str(json.dumps({"op": 0, "t": "RESUMED", "s": next(self._seq), "d": {}}))
        finally:
            if ws in self._sockets:
                self._sockets.remove(ws)
        return ws

    # ---- REST ----

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        body = await request.json() if request.can_read_body else {}
        lost: int | None = 0
        async with self._changed:
            self.requests.append((request.method, path))
            status, answer, created = self._answer(request, path, body)
            if created:
                route = next((r for r, queue in self._lost.items() if path.endswith(r) and queue), None)
                if route is not None:
                    lost = self._lost[route].pop(0)
            self._changed.notify_all()
        if created:  # as Discord does, tell the gateway too
            thread = answer.get("thread_metadata") is not None
            await self.dispatch("THREAD_CREATE" if thread else "MESSAGE_CREATE",
                                {**answer, "newly_created": True} if thread
                                else {**answer, "guild_id": str(GUILD), "member": member(BOT)})
        if lost is None:  # created, and the client hears nothing: the connection just closes
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)
        if lost:
            return web.Response(body=json.dumps({"message": "Service Unavailable" if lost == 503
                                                 else "Internal Server Error", "code": 0}).encode(),
                                status=lost, content_type="application/json")
        if status == 204:
            return web.Response(status=204)
        return web.Response(body=json.dumps(answer).encode(), status=status, content_type="application/json")

    def _answer(self, request: web.Request, path: str, body: dict[str, Any]) -> tuple[int, Any, bool]:
        """The status and body of a REST request, and whether it created something (a message, a thread)."""
        status, answer = self._answer_rest(request, path, body)
        replayed = isinstance(answer, dict) and answer.pop("_replayed", False)
        return status, answer, request.method == "POST" and status in (200, 201) and not replayed

    def _create_message(self, cid: int, body: dict[str, Any]) -> tuple[int, Any]:
        nonce = body.get("nonce")
        if nonce is not None:
            if not isinstance(nonce, str | int) or isinstance(nonce, bool):
                return 400, invalid_form("nonce", "NONCE_TYPE_INVALID", "Nonce must be an integer or a string.")
            if len(str(nonce)) > NONCE_MAX:
                return 400, invalid_form("nonce", "BASE_TYPE_MAX_LENGTH", f"Must be {NONCE_MAX} or fewer in length.")
        key = (cid, BOT, str(nonce))
        if nonce is not None and body.get("enforce_nonce") is True:
            seen = self._nonces.get(key)
            if seen is not None and self.clock() - seen[0] <= self.nonce_window:
                first = seen[1]
                self.replayed.append(Sent(cid, body, int(first["id"])))
                return 200, {**first, "_replayed": True}
        payload = self.message(cid, BOT, body.get("content", ""))
        payload["member"] = member(BOT)
        if nonce is None:
            payload.pop("nonce")
        else:
            payload["nonce"] = nonce
        self.sent.append(Sent(cid, body, int(payload["id"])))
        self.history.setdefault(cid, []).append(payload)
        self.channels[cid]["last_message_id"] = payload["id"]
        answer = {k: v for k, v in payload.items() if k not in ("guild_id", "member")}
        if nonce is not None:
            self._nonces[key] = (self.clock(), answer)
        return 200, answer

    def _answer_rest(self, request: web.Request, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if request.headers.get("Authorization") != f"Bot {TOKEN}":
            return 401, {"message": "401: Unauthorized", "code": 0}
        for route, queue in self._failures.items():
            if path.endswith(route) and queue:
                status = queue.pop(0)
                return status, {"message": "Internal Server Error" if status >= 500 else "You are being rate limited.",
                                "code": 0, "retry_after": 0.01, "global": False}
        parts = path.strip("/").split("/")
        if path == "/users/@me":
            return 200, user(BOT)
        if path == "/oauth2/applications/@me":
            return 200, {"id": str(APP), "name": "Baton", "description": "", "icon": None, "bot_public": False,
                         "bot_require_code_grant": False, "owner": user(SAM), "verify_key": "00" * 32,
                         "flags": self.app_flags, "team": None, "summary": "", "tags": [],
                         "bot": user(BOT), "approximate_guild_count": 1}
        if path in ("/gateway/bot", "/gateway"):
            return 200, {"url": self.gateway_url, "shards": 1,
                         "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0,
                                                 "max_concurrency": 1}}
        if parts[0] == "channels" and len(parts) == 2:
            channel = self.channels.get(int(parts[1]))
            return (200, channel) if channel else (404, {"message": "Unknown Channel", "code": 10003})
        if parts[0] == "channels" and len(parts) == 3 and parts[2] == "messages":
            cid = int(parts[1])
            if cid not in self.channels:
                return 404, {"message": "Unknown Channel", "code": 10003}
            if request.method == "POST":
                return self._create_message(cid, body)
            after, limit = int(request.query.get("after", 0)), int(request.query.get("limit", 50))
            found = sorted((m for m in self.history.get(cid, []) if int(m["id"]) > after), key=lambda m: int(m["id"]))
            page = found[:limit]
            return 200, [{k: v for k, v in m.items() if k not in ("guild_id", "member", "nonce")}  # REST omits them
                         for m in reversed(page)]
        if parts[0] == "channels" and len(parts) == 5 and parts[4] == "threads":
            cid, mid = int(parts[1]), int(parts[3])
            self.thread_requests.append(body)
            starter = next((m for m in self.history.get(cid, []) if int(m["id"]) == mid), None)
            if starter is None:  # a thread opened without a message has an id no message in the channel has
                return 404, {"message": "Unknown Message", "code": 10008}
            if mid in self.channels:
                return 400, {"message": "A thread has already been created for this message", "code": 160004}
            thread = thread_channel(mid, cid, body.get("name", "thread"), BOT)
            self.channels[mid] = thread
            self.threads_started.append(mid)
            return 201, thread
        if parts[0] == "guilds" and len(parts) == 4 and parts[2] == "members":
            uid = int(parts[3])
            if uid not in PEOPLE:
                return 404, {"message": "Unknown Member", "code": 10007}
            return 200, {**member(uid), "user": user(uid)}
        if parts[0] == "guilds" and parts[2:] == ["threads", "active"]:
            return 200, {"threads": [c for c in self.channels.values() if c["type"] == 11
                                     and not c.get("thread_metadata", {}).get("archived")], "members": []}
        return 404, {"message": "404: Not Found", "code": 0}
