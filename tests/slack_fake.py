"""A local fake of the Slack Web API, and a harness that drives the real Bolt app over real HTTP.

The fake serves the methods Baton calls on 127.0.0.1, checks the bot token, records every call
(with the time it arrived) and can answer a method with 429 + Retry-After or with 500. It keeps every
message posted, per channel, as Slack stores it (with its ``metadata``), and serves them back through
``conversations.replies`` and ``conversations.history`` in Slack's shape, so that a courier can find out
whether a post it is unsure of exists. Fault modes: ``fail`` (the call is refused), ``fail_after`` (the call
is applied but its answer is lost: a 5xx, or the connection closed without an answer), ``hang_after``
(applied, never answered: the client times out) and ``rate_limit`` (429 + Retry-After after N calls in a
window, as Slack's tiers do). The harness signs event and interaction payloads modelled on real Slack
Connect payloads and posts them to the adapter's ``/slack/events``; it awaits the adapter's tracker and the
courier, never a sleep.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import math
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import SlackAdapter, SlackConfig
from bot.app import Application
from bot.inbox import Tracker
from bot.outbox import Courier
from bot.platform import Factory
from bot.service import Service
from bot.settings import Settings

TOKEN = "xoxb-test-0000-secret"
SECRET = "signing-secret-for-tests"
HOST_TEAM, CUSTOMER_TEAM = "T0VENDOR", "T0CUSTOMER"
BOT_USER, BOT_ID, APP_ID = "U0BATON", "B0BATON", "A0BATON"
SHARED, INTERNAL = "C0SHARED", "C0INTERNAL"
LEADS = "C0LEADS"
"""The support leads' channel (``BATON_LEADS_CHANNEL``), where the weekly digest goes."""
GROUPS = {"support": "S0SUPPORT", "billing": "S0BILLING", "engineering": "S0ENG", "security": "S0SEC",
          "success": "S0SUCCESS", "cto": "S0CTO", "leadership": "S0LEAD"}
PEOPLE = {
    "U0DANA": {"name": "dana", "real_name": "Dana Smith", "team_id": CUSTOMER_TEAM, "tz": "America/Los_Angeles"},
    "U0ALEX": {"name": "alex", "real_name": "Alex Acme", "team_id": "T0ACME0001", "tz": "America/New_York"},
    "U0SAM": {"name": "sam", "real_name": "Sam Agent", "team_id": HOST_TEAM, "tz": "America/New_York"},
    "U0KIM": {"name": "kim", "real_name": "Kim Lead", "team_id": HOST_TEAM, "tz": "Europe/London"},
}
OUTBOX_EVENT = "baton_outbox"
"""The ``metadata.event_type`` of Baton's posts (``event_payload.outbox_id`` is the outbox row)."""
BOT_PROFILE = {"id": BOT_ID, "deleted": False, "name": "Baton", "updated": 1_750_000_000, "app_id": APP_ID,
               "icons": {"image_36": "https://a.slack-edge.com/80588/img/plugins/app/bot_36.png",
                         "image_48": "https://a.slack-edge.com/80588/img/plugins/app/bot_48.png",
                         "image_72": "https://a.slack-edge.com/80588/img/plugins/app/service_72.png"},
               "team_id": HOST_TEAM}
PAGE_LIMITS = {"conversations.replies": 1000, "conversations.history": 999}
"""Slack's default and largest ``limit`` per page (replies: 1000; history: 100 by default, 999 at most)."""


def _truthy(value: Any) -> bool:
    """A boolean argument as Slack reads it (slack-sdk sends ``"1"``/``"0"`` in a query string)."""
    return value is True or str(value).lower() in ("1", "true")


def _ts(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _cursor(ts: str) -> str:
    """Slack's cursors are opaque base64; history's decode to ``next_ts:<ts>``, as here."""
    return base64.b64encode(f"next_ts:{ts}".encode()).decode()


def _from_cursor(cursor: str) -> str | None:
    try:
        text = base64.b64decode(cursor.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return text.removeprefix("next_ts:") if text.startswith("next_ts:") and _ts(text[8:]) is not None else None


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    status: int
    """The HTTP status answered; 0 when no answer was given (connection closed, or still hanging)."""
    at: float
    answer: Any = None
    """The body of the answer; for a call whose answer was lost, the body Slack would have sent."""
    applied: bool = False
    """The call took effect in Slack (a post exists), whatever the client was told."""


@dataclass
class _Limit:
    calls: int
    per: float
    retry_after: int | None
    seen: list[float] = field(default_factory=list)


@dataclass
class FakeSlack:
    """The Web API methods Baton uses, on a free loopback port."""

    channels: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        SHARED: {"id": SHARED, "name": "acme-notewise", "is_ext_shared": True, "is_shared": True},
        INTERNAL: {"id": INTERNAL, "name": "support-handoffs", "is_ext_shared": False, "is_shared": False},
        LEADS: {"id": LEADS, "name": "support-leads", "is_ext_shared": False, "is_shared": False},
    })
    calls: list[Call] = field(default_factory=list)
    failures: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Every message the fake knows, per channel, oldest first, as Slack stores it (metadata included)."""
    page_limits: dict[str, int] = field(default_factory=lambda: dict(PAGE_LIMITS))
    """The largest ``limit`` per method; 15 mimics a commercially distributed app outside the Marketplace."""
    clock: Callable[[], float] = time.monotonic
    """The time for rate-limit windows (a test may pass its own to move time without sleeping)."""
    _last_ts: tuple[int, int] = (0, 0)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    server: TestServer | None = None
    _counts: dict[str, dict[tuple[str, bool], int]] = field(default_factory=dict)
    _lost: dict[str, list[int | None]] = field(default_factory=dict)
    _hang: dict[str, int] = field(default_factory=dict)
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _closing: bool = False
    _limits: dict[str, _Limit] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    """What ``files.info`` answers, by file id (a Slack Connect file arrives with only its id)."""
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Files uploaded the v2 way, by file id: what ``files.getUploadURLExternal`` was told (``filename``,
    ``length``), the ``data`` posted to the upload URL (``None`` until then) and whether
    ``files.completeUploadExternal`` finished it (``completed``, with its ``channel``)."""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle)
        app.router.add_post("/upload/{file_id}", self._upload)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return str(self.server.make_url("/api/"))

    async def close(self) -> None:
        self._closing = True
        self._release.set()
        if self.server is not None:
            await self.server.close()

    # ---- fault modes ----

    def fail(self, method: str, status: int, *, times: int = 1, retry_after: int | None = None) -> None:
        """Refuse the next ``times`` calls of ``method`` with ``status`` (nothing is applied)."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self.failures.setdefault(method, []).extend([(status, headers)] * times)

    def fail_after(self, method: str, status: int | None = 500, *, times: int = 1) -> None:
        """The next ``times`` successful calls of ``method`` take effect (the post exists afterwards, in
        replies and history), but the client is answered ``status`` instead, or, with ``status=None``, the
        connection is closed without an answer."""
        self._lost.setdefault(method, []).extend([status] * times)

    def hang_after(self, method: str, *, times: int = 1) -> None:
        """The next ``times`` successful calls of ``method`` take effect but are never answered (until
        :meth:`release` or :meth:`close`): the client's own timeout fires."""
        self._hang[method] = self._hang.get(method, 0) + times

    def release(self) -> None:
        """Let the calls hanging now finish (their clients have usually given up by then)."""
        self._release.set()
        if not self._closing:
            self._release = asyncio.Event()

    def rate_limit(self, method: str, calls: int, *, per: float = 60.0, retry_after: int | None = None) -> None:
        """At most ``calls`` calls of ``method`` per ``per`` seconds; beyond, Slack's 429 with ``Retry-After``
        (by default the seconds until the window has room again). ``calls=50`` is Tier 3; ``calls=1`` is what
        ``conversations.replies``/``history`` allow an app distributed outside the Marketplace since 2025."""
        self._limits[method] = _Limit(calls, per, retry_after)

    # ---- what tests read ----

    def ok(self, method: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.status == 200 and (method is None or c.method == method)]

    def count(self, method: str, channel: str | None = None, *, top_level: bool = False) -> int:
        """Calls of ``method`` that took effect (in ``channel``; only those outside threads if ``top_level``);
        cheap enough to wait on under load."""
        counts = self._counts.get(method, {})
        return sum(n for (c, threaded), n in counts.items()
                   if (channel is None or c == channel) and not (top_level and threaded))

    def posts(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Messages posted (those whose answer was lost too), each with the ts Slack gave it (``posted_ts``)."""
        return [{**c.args, "posted_ts": c.answer.get("ts")} for c in self.calls
                if c.applied and c.method == "chat.postMessage"
                and (channel is None or c.args.get("channel") == channel)]

    def messages_in(self, channel: str, thread_ts: str | None = None) -> list[dict[str, Any]]:
        """The replies in ``thread_ts``'s thread, or with ``None`` the channel's top-level messages; oldest first,
        as Slack stores them."""
        return [m for m in self.messages.get(channel, [])
                if (m.get("thread_ts") == thread_ts and m["ts"] != thread_ts if thread_ts is not None
                    else m.get("thread_ts") in (None, m["ts"]))]

    def with_metadata(self, outbox_id: int | str, channel: str | None = None) -> list[dict[str, Any]]:
        """The messages that carry Baton's outbox id ``outbox_id`` in their metadata."""
        return [m for c, kept in self.messages.items() if channel is None or c == channel for m in kept
                if (m.get("metadata") or {}).get("event_type") == OUTBOX_EVENT
                and str((m["metadata"].get("event_payload") or {}).get("outbox_id")) == str(outbox_id)]

    def count_with_metadata(self, outbox_id: int | str, channel: str | None = None) -> int:
        """How many messages exist for the outbox row ``outbox_id``: exactly-once delivery means 1."""
        return len(self.with_metadata(outbox_id, channel))

    def add_message(self, channel: str, message: dict[str, Any]) -> dict[str, Any]:
        """A message the fake did not post (a customer's, from an event) that replies and history should show."""
        kept = {k: v for k, v in message.items() if k not in ("channel", "event_ts", "channel_type")}
        kept.setdefault("type", "message")
        self._keep(channel, kept)
        return kept

    async def wait_for(self, predicate: Callable[[FakeSlack], bool], timeout: float = 10.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self)), timeout)

    # ---- HTTP ----

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            raw = await request.read()
            if request.content_type == "application/json":
                args.update(json.loads(raw or b"{}"))
            else:
                args.update(dict(urllib.parse.parse_qsl(raw.decode())))
        for key in ("blocks", "view", "metadata", "files"):  # form-encoded calls carry these as JSON strings
            if isinstance(args.get(key), str):
                try:
                    args[key] = json.loads(args[key])
                except json.JSONDecodeError:
                    pass  # left as sent: the method answers invalid_metadata_format or the like
        status, headers, body = self._answer(method, args, request.headers.get("Authorization"))
        applied = status == 200 and isinstance(body, dict) and bool(body.get("ok"))
        lost: int | None | str = status  # what the client is told: a status, None (closed) or "hang"
        if applied and (queue := self._lost.get(method)):
            lost = queue.pop(0)
        elif applied and self._hang.get(method):
            self._hang[method] -= 1
            lost = "hang"
        async with self._changed:
            self.calls.append(Call(method, args, lost if isinstance(lost, int) else 0, time.monotonic(), body,
                                   applied))
            if applied:
                per_channel = self._counts.setdefault(method, {})
                key = (str(args.get("channel")), bool(args.get("thread_ts")))
                per_channel[key] = per_channel.get(key, 0) + 1
            self._changed.notify_all()
        if lost == "hang":
            await self._release.wait()  # the event of this moment: release() replaces it for later hangs
            return web.json_response(body, status=status, headers=headers)
        if lost is None:  # the post exists, the client hears nothing: the connection just closes
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)
        status = int(lost)
        if status >= 500:
            return web.Response(status=status, text="<html>Internal Server Error</html>", content_type="text/html")
        return web.json_response(body, status=status, headers=headers)

    def _limited(self, method: str) -> int | None:
        """The Retry-After of a call beyond ``method``'s rate limit, or None if it may go through."""
        limit = self._limits.get(method)
        if limit is None:
            return None
        now = self.clock()
        limit.seen = [t for t in limit.seen if t > now - limit.per]
        if len(limit.seen) < limit.calls:
            limit.seen.append(now)
            return None
        if limit.retry_after is not None:
            return limit.retry_after
        return max(1, math.ceil(limit.seen[0] + limit.per - now))

    def _answer(self, method: str, args: dict[str, Any], auth: str | None) -> tuple[int, dict[str, str], Any]:
        if auth != f"Bearer {TOKEN}":
            return 200, {}, {"ok": False, "error": "invalid_auth"}
        if queue := self.failures.get(method):
            status, headers = queue.pop(0)
            return status, headers, {"ok": False, "error": "ratelimited" if status == 429 else "internal_error"}
        if (wait := self._limited(method)) is not None:
            return 429, {"Retry-After": str(wait)}, {"ok": False, "error": "ratelimited"}
        if method == "auth.test":
            return 200, {}, {"ok": True, "team_id": HOST_TEAM, "team": "Notewise", "user_id": BOT_USER,
                             "bot_id": BOT_ID, "url": "https://notewise.example/"}
        if method == "conversations.info":
            channel = self.channels.get(args.get("channel", ""))
            return 200, {}, {"ok": True, "channel": channel} if channel else {"ok": False, "error": "channel_not_found"}
        if method == "users.info":
            user = PEOPLE.get(args.get("user", ""))
            if user is None and str(args.get("user", "")).startswith("U0C"):  # the benchmark's customers
                user = {"name": args["user"].lower(), "real_name": f"Customer {args['user'][3:]}",
                        "team_id": CUSTOMER_TEAM, "tz": "America/Chicago"}
            if user is None:
                return 200, {}, {"ok": False, "error": "user_not_found"}
            return 200, {}, {"ok": True, "user": {"id": args["user"], **user,
                                                  "profile": {"display_name": "", "real_name": user["real_name"]}}}
        if method == "files.info":
            file = self.files.get(args.get("file", ""))
            return 200, {}, {"ok": True, "file": file} if file else {"ok": False, "error": "file_not_found"}
        if method == "chat.postMessage":
            return 200, {}, self._post(args)
        if method == "chat.update":
            return 200, {}, self._update(args)
        if method == "chat.postEphemeral":
            return 200, {}, {"ok": True, "message_ts": self._new_ts()}
        if method == "chat.getPermalink":
            ts = str(args.get("message_ts", "")).replace(".", "")
            return 200, {}, {"ok": True, "channel": args.get("channel"),
                             "permalink": f"https://notewise.example/archives/{args.get('channel')}/p{ts}"}
        if method == "views.open":
            return 200, {}, {"ok": True, "view": {"id": "V0MODAL", **args.get("view", {})}}
        if method == "views.publish":  # a user's App Home; every call is kept in ``calls``
            view = args.get("view")
            if not args.get("user_id") or not isinstance(view, dict) or len(view.get("blocks") or []) > 100:
                return 200, {}, {"ok": False, "error": "invalid_arguments"}
            return 200, {}, {"ok": True, "view": {"id": f"V0HOME{args['user_id']}", "team_id": HOST_TEAM, **view}}
        if method == "files.getUploadURLExternal":
            return 200, {}, self._upload_url(args)
        if method == "files.completeUploadExternal":
            return 200, {}, self._complete_upload(args)
        if method == "conversations.replies":
            return 200, {}, self._replies(args)
        if method == "conversations.history":
            return 200, {}, self._history(args)
        return 200, {}, {"ok": False, "error": "unknown_method"}

    # ---- files (the v2 upload: an upload URL, the bytes posted to it, then completion) ----

    def _upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            length = int(args.get("length") or 0)
        except ValueError:
            length = 0
        if not args.get("filename") or length <= 0:
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F0UP{len(self.uploads) + 1:04d}"
        self.uploads[file_id] = {"filename": str(args["filename"]), "length": length, "data": None,
                                 "alt_txt": args.get("alt_txt"), "completed": False, "channel": None}
        assert self.server is not None
        return {"ok": True, "file_id": file_id, "upload_url": str(self.server.make_url(f"/upload/{file_id}"))}

    async def _upload(self, request: web.Request) -> web.Response:
        """The upload URL: takes the file's bytes (no token: the URL is the credential, as Slack's is)."""
        upload = self.uploads.get(request.match_info["file_id"])
        data = await request.read()
        async with self._changed:
            self.calls.append(Call("upload", {"file_id": request.match_info["file_id"], "length": len(data)},
                                   200 if upload is not None else 404, time.monotonic(), None, upload is not None))
            if upload is not None:
                upload["data"] = data
            self._changed.notify_all()
        if upload is None:
            return web.Response(status=404, text="not found")
        return web.Response(text=f"OK - {len(data)}")

    def _complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        files = args.get("files")
        if not isinstance(files, list) or not files or not all(isinstance(f, dict) for f in files):
            return {"ok": False, "error": "invalid_arguments"}
        channel = args.get("channel_id") or args.get("channels")
        if channel and str(channel) not in self.channels:
            return {"ok": False, "error": "channel_not_found"}
        done = []
        for item in files:
            upload = self.uploads.get(str(item.get("id")))
            if upload is None or upload["data"] is None:
                return {"ok": False, "error": "file_not_found"}
            if len(upload["data"]) != upload["length"]:  # fewer or more bytes arrived than were announced
                return {"ok": False, "error": "file_upload_size_mismatch"}
            upload.update(completed=True, channel=str(channel) if channel else None)
            file = {"id": item["id"], "name": upload["filename"], "title": item.get("title") or upload["filename"],
                    "size": upload["length"], "channels": [str(channel)] if channel else []}
            self.files[str(item["id"])] = file
            done.append({"id": file["id"], "title": file["title"]})
        if channel:  # shared: a message with the files appears in the channel (or the thread)
            message: dict[str, Any] = {"user": BOT_USER, "type": "message", "ts": self._new_ts(), "upload": True,
                                       "text": args.get("initial_comment") or "", "team": HOST_TEAM,
                                       "files": [self.files[f["id"]] for f in done]}
            if args.get("thread_ts"):
                message["thread_ts"] = str(args["thread_ts"])
            self._keep(str(channel), message)
        return {"ok": True, "files": done}

    # ---- messages ----

    def _new_ts(self) -> str:
        """A new message ts: the time now, as Slack's are, strictly increasing. Its microseconds are 500000 or
        more, which the ts the harness makes up for customers' messages (``<second>.000100`` and up) never are."""
        second, micro = self._last_ts
        now = int(time.time())
        self._last_ts = (now, 500_000) if now > second else (second, micro + 1) if micro < 999_999 \
            else (second + 1, 500_000)
        return f"{self._last_ts[0]}.{self._last_ts[1]:06d}"

    def _keep(self, channel: str, message: dict[str, Any]) -> None:
        kept = self.messages.setdefault(channel, [])
        kept.append(message)
        if len(kept) > 1 and Decimal(kept[-2]["ts"]) > Decimal(message["ts"]):
            kept.sort(key=lambda m: Decimal(m["ts"]))

    def _find(self, channel: str, ts: str) -> dict[str, Any] | None:
        return next((m for m in self.messages.get(channel, []) if m["ts"] == ts), None)

    def _post(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel", ""))
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not (args.get("text") or args.get("blocks") or args.get("attachments") or args.get("markdown_text")):
            return {"ok": False, "error": "no_text"}
        metadata = args.get("metadata")
        if metadata is not None and not (isinstance(metadata, dict) and isinstance(metadata.get("event_type"), str)
                                         and isinstance(metadata.get("event_payload"), dict)):
            return {"ok": False, "error": "invalid_metadata_format"}
        ts = self._new_ts()
        message: dict[str, Any] = {"user": BOT_USER, "type": "message", "ts": ts, "bot_id": BOT_ID, "app_id": APP_ID,
                                   "text": args.get("text") or "", "team": HOST_TEAM, "bot_profile": BOT_PROFILE}
        if args.get("blocks"):
            message["blocks"] = args["blocks"]
        if args.get("attachments"):
            message["attachments"] = args["attachments"]
        thread_ts = args.get("thread_ts")
        if thread_ts:
            message["thread_ts"] = str(thread_ts)
            parent = self._find(channel, str(thread_ts))
            if parent is not None and parent.get("user"):
                message["parent_user_id"] = parent["user"]
            if _truthy(args.get("reply_broadcast")):
                message["subtype"] = "thread_broadcast"
        if metadata is not None:
            message["metadata"] = {"event_type": metadata["event_type"], "event_payload": metadata["event_payload"]}
        self._keep(channel, message)
        return {"ok": True, "channel": channel, "ts": ts, "message": dict(message)}

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(args.get("channel", "")), str(args.get("ts", ""))
        message = self._find(channel, ts)
        if message is not None:
            for key in ("text", "blocks", "attachments"):
                if key in args:
                    message[key] = args[key]
            if isinstance(args.get("metadata"), dict):
                message["metadata"] = args["metadata"]
            message["edited"] = {"user": BOT_USER, "ts": self._new_ts()}
        answer: dict[str, Any] = {"ok": True, "channel": channel, "ts": ts, "text": args.get("text", "")}
        if message is not None:
            answer["message"] = dict(message)
        return answer

    def _shown(self, channel: str, page: list[dict[str, Any]], with_metadata: bool) -> list[dict[str, Any]]:
        """Messages as replies and history show them: metadata only when asked for, thread fields on a parent."""
        roots = {m["ts"] for m in page}
        replies: dict[str, list[dict[str, Any]]] = {}
        for m in self.messages.get(channel, []):
            if m.get("thread_ts") in roots and m["ts"] != m["thread_ts"]:
                replies.setdefault(m["thread_ts"], []).append(m)
        shown = []
        for message in page:
            one = {k: v for k, v in message.items() if k != "metadata" or with_metadata}
            if below := replies.get(message["ts"]):
                users = list(dict.fromkeys(str(m.get("user") or m.get("bot_id")) for m in below))
                one.update({"thread_ts": message["ts"], "reply_count": len(below), "reply_users_count": len(users),
                            "latest_reply": below[-1]["ts"], "reply_users": users, "is_locked": False,
                            "subscribed": False})
            shown.append(one)
        return shown

    def _window(self, args: dict[str, Any]) -> tuple[Decimal, Decimal, bool] | str:
        oldest, latest = _ts(args.get("oldest") or 0), _ts(args.get("latest") or "9999999999.999999")
        if oldest is None:
            return "invalid_ts_oldest"
        if latest is None:
            return "invalid_ts_latest"
        return oldest, latest, _truthy(args.get("inclusive"))

    def _page_size(self, method: str, args: dict[str, Any]) -> int:
        most = self.page_limits[method]
        try:
            asked = int(args.get("limit") or (100 if method == "conversations.history" else most))
        except ValueError:
            asked = most
        return max(1, min(asked, most))

    def _replies(self, args: dict[str, Any]) -> dict[str, Any]:
        """The thread of ``ts``: its parent first on every page (whatever ``oldest`` says, as Slack does), then
        the replies oldest first. A parent the fake never saw (a customer's message) is shown minimal."""
        channel, ts = str(args.get("channel", "")), str(args.get("ts", ""))
        if channel not in self.channels and channel not in self.messages:
            return {"ok": False, "error": "channel_not_found"}
        if _ts(ts) is None:
            return {"ok": False, "error": "thread_not_found"}
        window = self._window(args)
        if isinstance(window, str):
            return {"ok": False, "error": window}
        oldest, latest, inclusive = window
        known = self._find(channel, ts)
        root = str(known["thread_ts"]) if known is not None and known.get("thread_ts") else ts
        parent = self._find(channel, root) if root != ts else known
        if parent is None:  # a customer's message the fake never saw: it exists in Slack, shown minimal
            parent = {"type": "message", "ts": root, "text": ""}
        with_metadata = _truthy(args.get("include_all_metadata"))
        replies = [m for m in self.messages.get(channel, []) if m.get("thread_ts") == root and m["ts"] != root
                   and (oldest < Decimal(m["ts"]) < latest
                        or inclusive and Decimal(m["ts"]) in (oldest, latest))]
        start = 0
        if args.get("cursor"):
            after = _from_cursor(str(args["cursor"]))
            if after is None:
                return {"ok": False, "error": "invalid_cursor"}
            start = next((i for i, m in enumerate(replies) if Decimal(m["ts"]) >= Decimal(after)), len(replies))
        size = max(1, self._page_size("conversations.replies", args) - 1)
        page = replies[start:start + size]
        more = start + size < len(replies)
        answer: dict[str, Any] = {"ok": True, "messages": self._shown(channel, [parent, *page], with_metadata),
                                  "has_more": more}
        if more:
            answer["response_metadata"] = {"next_cursor": _cursor(replies[start + size]["ts"])}
        return answer

    def _history(self, args: dict[str, Any]) -> dict[str, Any]:
        """The channel's top-level messages (and replies also sent to the channel), newest first."""
        channel = str(args.get("channel", ""))
        if channel not in self.channels and channel not in self.messages:
            return {"ok": False, "error": "channel_not_found"}
        window = self._window(args)
        if isinstance(window, str):
            return {"ok": False, "error": window}
        oldest, latest, inclusive = window
        with_metadata = _truthy(args.get("include_all_metadata"))
        found = [m for m in reversed(self.messages.get(channel, []))
                 if (m.get("thread_ts") in (None, m["ts"]) or m.get("subtype") == "thread_broadcast")
                 and (oldest < Decimal(m["ts"]) < latest or inclusive and Decimal(m["ts"]) in (oldest, latest))]
        start = 0
        if args.get("cursor"):
            before = _from_cursor(str(args["cursor"]))
            if before is None:
                return {"ok": False, "error": "invalid_cursor"}
            start = next((i for i, m in enumerate(found) if Decimal(m["ts"]) <= Decimal(before)), len(found))
        size = self._page_size("conversations.history", args)
        page = found[start:start + size]
        more = start + size < len(found)
        answer: dict[str, Any] = {"ok": True, "messages": self._shown(channel, page, with_metadata),
                                  "has_more": more, "pin_count": 0, "channel_actions_ts": None,
                                  "channel_actions_count": 0}
        if more:
            answer["response_metadata"] = {"next_cursor": _cursor(found[start + size]["ts"])}
        return answer


def slack_ts(at: datetime, n: int = 100) -> str:
    return f"{int(at.timestamp())}.{n:06d}"


def envelope(event: dict[str, Any], *, event_id: str) -> dict[str, Any]:
    """The Events API envelope of an event in the vendor's workspace."""
    return {"token": "legacy", "team_id": HOST_TEAM, "context_team_id": HOST_TEAM, "api_app_id": "A0BATON",
            "event": event, "type": "event_callback", "event_id": event_id, "event_time": int(time.time()),
            "is_ext_shared_channel": event.get("channel") == SHARED,
            "authorizations": [{"enterprise_id": None, "team_id": HOST_TEAM, "user_id": BOT_USER,
                                "is_bot": True, "is_enterprise_install": False}],
            "event_context": "4-eyJldCI6Im1lc3NhZ2UifQ"}


def message_event(user: str, text: str, *, ts: str, thread_ts: str | None = None, channel: str = SHARED,
                  kind: str = "message", **extra: Any) -> dict[str, Any]:
    """A message as Slack sends it from a Slack Connect channel (``user_team`` is the author's team)."""
    person = PEOPLE.get(user, {"team_id": HOST_TEAM, "real_name": user, "name": user})
    event: dict[str, Any] = {
        "type": kind, "user": user, "text": text, "ts": ts, "channel": channel, "event_ts": ts,
        "channel_type": "channel", "team": person["team_id"], "user_team": person["team_id"],
        "source_team": person["team_id"],
        "user_profile": {"real_name": person["real_name"], "display_name": "", "name": person["name"],
                         "team": person["team_id"], "is_restricted": False, "is_ultra_restricted": False},
        "blocks": [{"type": "rich_text", "block_id": "x", "elements": [
            {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}]}],
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
        event["parent_user_id"] = user
    event.update(extra)
    return event


class Harness:
    """The real application with the real Slack platform (Bolt app, Web API client, inbox workers,
    courier) over HTTP, against :class:`FakeSlack`. ``platforms`` adds other platforms' factories."""

    def __init__(self, service: Service, fake: FakeSlack, api_url: str, *,
                 platforms: dict[str, Factory] | None = None, workers: int = 8, **courier: Any) -> None:
        config = SlackConfig(bot_token=TOKEN, signing_secret=SECRET, customer_channels=frozenset({SHARED}),
                             internal_channel=INTERNAL, api_url=api_url, groups=GROUPS)
        self.client = AsyncWebClient(token=TOKEN, base_url=api_url)
        self.application = Application(
            Settings(), service.engine, service.store, service=service, port=0, workers=workers,
            platforms={"slack": lambda app: SlackAdapter(app, config, client=self.client), **(platforms or {})},
            courier_options={"backoff": 0.0, **courier})
        adapter = self.application.platforms["slack"]
        assert isinstance(adapter, SlackAdapter)
        self.adapter = adapter
        self.service = service
        self.fake = fake
        self.server: TestServer | None = None
        self.http: ClientSession | None = None
        self._events = itertools.count(1)
        self._ts = itertools.count(100)
        self.last_response: str = ""
        """The body of the last answer to a posted request (e.g. a modal's validation errors)."""

    @property
    def courier(self) -> Courier:
        return self.application.courier

    @property
    def tracker(self) -> Tracker:
        return self.application.inbox.tracker

    async def __aenter__(self) -> Harness:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        await self.application.start()
        self.server = TestServer(self.application.web_app(), host="127.0.0.1")
        await self.server.start_server()
        self.http = ClientSession()

    async def close(self) -> None:
        await self.application.stop()
        if self.http is not None:
            await self.http.close()
        if self.server is not None:
            await self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/slack/events"))

    async def post(self, body: str, content_type: str, *, timestamp: int | None = None, signature: str | None = None,
                   headers: dict[str, str] | None = None) -> int:
        assert self.http is not None
        stamp = str(timestamp if timestamp is not None else int(time.time()))
        sig = signature or SignatureVerifier(SECRET).generate_signature(timestamp=stamp, body=body)
        async with self.http.post(self.url, data=body.encode(), headers={
            "Content-Type": content_type, "X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": sig,
            **(headers or {})}) as response:
            self.last_response = await response.text()
            return response.status

    def envelope(self, event: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
        return envelope(event, event_id=event_id or f"Ev{next(self._events):08d}")

    def message_event(self, user: str, text: str, *, at: datetime | None = None, ts: str | None = None,
                      **extra: Any) -> dict[str, Any]:
        ts = ts or (slack_ts(at, next(self._ts)) if at else f"{int(time.time())}.{next(self._ts):06d}")
        return message_event(user, text, ts=ts, **extra)

    async def send_event(self, event: dict[str, Any], *, event_id: str | None = None,
                         headers: dict[str, str] | None = None, wait: bool = True) -> tuple[int, str]:
        body = self.envelope(event, event_id=event_id)
        status = await self.post(json.dumps(body), "application/json", headers=headers)
        if wait and status == 200:
            await self.tracker.wait(body["event_id"])
        return status, body["event_id"]

    async def say(self, user: str, text: str, **kw: Any) -> str:
        """A message event; returns its ts (the thread of a new conversation)."""
        event = self.message_event(user, text, **kw)
        status, _ = await self.send_event(event)
        assert status == 200
        return str(event["ts"])

    async def interact(self, payload: dict[str, Any], *, wait: bool = True) -> int:
        body = "payload=" + urllib.parse.quote(json.dumps(payload))
        status = await self.post(body, "application/x-www-form-urlencoded")
        if wait and status == 200:
            await self.tracker.wait(payload["trigger_id"])
        return status

    def click_payload(self, user: str, action_id: str, value: str, card_ts: str) -> dict[str, Any]:
        person = PEOPLE[user]
        return {
            "type": "block_actions",
            "user": {"id": user, "username": person["name"], "name": person["name"], "team_id": person["team_id"]},
            "api_app_id": "A0BATON", "token": "legacy",
            "container": {"type": "message", "message_ts": card_ts, "channel_id": INTERNAL, "is_ephemeral": False},
            "trigger_id": f"{next(self._events)}.{int(time.time())}.trigger", "team": {"id": HOST_TEAM, "domain": "nw"},
            "enterprise": None, "is_enterprise_install": False,
            "channel": {"id": INTERNAL, "name": "support-handoffs"},
            "message": {"type": "message", "ts": card_ts, "text": "handoff", "user": BOT_USER, "bot_id": BOT_ID},
            "state": {"values": {}},
            "response_url": "https://hooks.example/actions/T0VENDOR/1/abc",
            "actions": [{"action_id": action_id, "block_id": "baton_card_actions", "text": {"type": "plain_text",
                         "text": action_id}, "value": value, "type": "button", "action_ts": f"{time.time():.6f}"}],
        }

    async def click(self, user: str, action_id: str, value: str, card_ts: str, *, wait: bool = True) -> int:
        return await self.interact(self.click_payload(user, action_id, value, card_ts), wait=wait)

    async def submit(self, user: str, view: dict[str, Any], text: str) -> int:
        person = PEOPLE[user]
        payload = {
            "type": "view_submission", "team": {"id": HOST_TEAM, "domain": "nw"},
            "user": {"id": user, "username": person["name"], "name": person["name"], "team_id": person["team_id"]},
            "api_app_id": "A0BATON", "token": "legacy", "trigger_id": f"{next(self._events)}.view.trigger",
            "view": {**view, "id": "V0MODAL", "team_id": HOST_TEAM, "state": {"values": {
                "message": {"text": {"type": "plain_text_input", "value": text}}}}},
            "response_urls": [], "is_enterprise_install": False, "enterprise": None,
        }
        return await self.interact(payload)

    async def settle(self) -> None:
        """Everything received so far has been handled and delivered (or parked)."""
        await self.application.settle()
