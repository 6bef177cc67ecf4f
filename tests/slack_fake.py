"""A local fake of the Slack Web API, and a harness that drives the real Bolt app over real HTTP.

The fake serves the methods Baton calls on 127.0.0.1, checks the bot token, records every call
(with the time it arrived) and can answer a method with 429 + Retry-After or with 500. The harness
signs event and interaction payloads modelled on real Slack Connect payloads and posts them to the
adapter's ``/slack/events``; it awaits the adapter's tracker and the courier, never a sleep.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import SlackAdapter, SlackConfig
from bot.service import Service

TOKEN = "xoxb-test-0000-secret"
SECRET = "signing-secret-for-tests"
HOST_TEAM, CUSTOMER_TEAM = "T0VENDOR", "T0CUSTOMER"
BOT_USER, BOT_ID = "U0BATON", "B0BATON"
SHARED, INTERNAL = "C0SHARED", "C0INTERNAL"
GROUPS = {"support": "S0SUPPORT", "billing": "S0BILLING", "engineering": "S0ENG", "security": "S0SEC",
          "success": "S0SUCCESS", "cto": "S0CTO", "leadership": "S0LEAD"}
PEOPLE = {
    "U0DANA": {"name": "dana", "real_name": "Dana Smith", "team_id": CUSTOMER_TEAM, "tz": "America/Los_Angeles"},
    "U0ALEX": {"name": "alex", "real_name": "Alex Acme", "team_id": "T0ACME0001", "tz": "America/New_York"},
    "U0SAM": {"name": "sam", "real_name": "Sam Agent", "team_id": HOST_TEAM, "tz": "America/New_York"},
    "U0KIM": {"name": "kim", "real_name": "Kim Lead", "team_id": HOST_TEAM, "tz": "Europe/London"},
}


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    status: int
    at: float
    answer: Any = None


@dataclass
class FakeSlack:
    """The Web API methods Baton uses, on a free loopback port."""

    channels: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        SHARED: {"id": SHARED, "name": "acme-notewise", "is_ext_shared": True, "is_shared": True},
        INTERNAL: {"id": INTERNAL, "name": "support-handoffs", "is_ext_shared": False, "is_shared": False},
    })
    calls: list[Call] = field(default_factory=list)
    failures: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    server: TestServer | None = None
    _counts: dict[str, dict[tuple[str, bool], int]] = field(default_factory=dict)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return str(self.server.make_url("/api/"))

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    def fail(self, method: str, status: int, *, times: int = 1, retry_after: int | None = None) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self.failures.setdefault(method, []).extend([(status, headers)] * times)

    def ok(self, method: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.status == 200 and (method is None or c.method == method)]

    def count(self, method: str, channel: str | None = None, *, top_level: bool = False) -> int:
        """Successful calls of ``method`` (in ``channel``; only those outside threads if ``top_level``);
        cheap enough to wait on under load."""
        counts = self._counts.get(method, {})
        return sum(n for (c, threaded), n in counts.items()
                   if (channel is None or c == channel) and not (top_level and threaded))

    def posts(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Messages posted, each with the ts Slack gave it (``posted_ts``)."""
        return [{**c.args, "posted_ts": c.answer.get("ts")} for c in self.ok("chat.postMessage")
                if channel is None or c.args.get("channel") == channel]

    async def wait_for(self, predicate: Callable[[FakeSlack], bool], timeout: float = 10.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self)), timeout)

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            raw = await request.read()
            if request.content_type == "application/json":
                args.update(json.loads(raw or b"{}"))
            else:
                args.update(dict(urllib.parse.parse_qsl(raw.decode())))
        for key in ("blocks", "view"):  # form-encoded calls carry these as JSON strings
            if isinstance(args.get(key), str):
                args[key] = json.loads(args[key])
        status, headers, body = self._answer(method, args, request.headers.get("Authorization"))
        async with self._changed:
            self.calls.append(Call(method, args, status, time.monotonic(), body))
            if status == 200 and isinstance(body, dict) and body.get("ok"):
                per_channel = self._counts.setdefault(method, {})
                key = (str(args.get("channel")), bool(args.get("thread_ts")))
                per_channel[key] = per_channel.get(key, 0) + 1
            self._changed.notify_all()
        if status == 500:
            return web.Response(status=500, text="<html>Internal Server Error</html>", content_type="text/html")
        return web.json_response(body, status=status, headers=headers)

    def _answer(self, method: str, args: dict[str, Any], auth: str | None) -> tuple[int, dict[str, str], Any]:
        if auth != f"Bearer {TOKEN}":
            return 200, {}, {"ok": False, "error": "invalid_auth"}
        if queue := self.failures.get(method):
            status, headers = queue.pop(0)
            return status, headers, {"ok": False, "error": "ratelimited" if status == 429 else "internal_error"}
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
        if method == "chat.postMessage":
            ts = f"{1_800_000_000 + next(self._ts)}.000100"
            return 200, {}, {"ok": True, "channel": args.get("channel"), "ts": ts,
                             "message": {"text": args.get("text"), "ts": ts}}
        if method == "chat.update":
            return 200, {}, {"ok": True, "channel": args.get("channel"), "ts": args.get("ts")}
        if method == "chat.postEphemeral":
            return 200, {}, {"ok": True, "message_ts": f"{1_800_000_000 + next(self._ts)}.000200"}
        if method == "chat.getPermalink":
            ts = str(args.get("message_ts", "")).replace(".", "")
            return 200, {}, {"ok": True, "channel": args.get("channel"),
                             "permalink": f"https://notewise.example/archives/{args.get('channel')}/p{ts}"}
        if method == "views.open":
            return 200, {}, {"ok": True, "view": {"id": "V0MODAL", **args.get("view", {})}}
        return 200, {}, {"ok": False, "error": "unknown_method"}


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
    """The real adapter (Bolt app, Web API client, courier) over HTTP, against :class:`FakeSlack`."""

    def __init__(self, service: Service, fake: FakeSlack, api_url: str, *,
                 elsewhere: dict[str, Any] | None = None, **courier: Any) -> None:
        config = SlackConfig(bot_token=TOKEN, signing_secret=SECRET, customer_channels=frozenset({SHARED}),
                             internal_channel=INTERNAL, api_url=api_url, groups=GROUPS)
        self.client = AsyncWebClient(token=TOKEN, base_url=api_url)
        self.adapter = SlackAdapter(service, config, client=self.client,
                                    courier_options={"backoff": 0.0, **courier}, elsewhere=elsewhere)
        self.service = service
        self.fake = fake
        self.server: TestServer | None = None
        self.http: ClientSession | None = None
        self._events = itertools.count(1)
        self._ts = itertools.count(100)
        self.last_response: str = ""
        """The body of the last answer to a posted request (e.g. a modal's validation errors)."""

    async def start(self, *, courier: bool = True) -> None:
        await self.adapter.setup()
        if courier:
            self.adapter.start()
        self.server = TestServer(self.adapter.web_app(), host="127.0.0.1")
        await self.server.start_server()
        self.http = ClientSession()

    async def close(self) -> None:
        await self.adapter.stop()
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
            await self.adapter.tracker.wait(body["event_id"])
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
            await self.adapter.tracker.wait(payload["trigger_id"])
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
        """Everything decided so far has been delivered (or parked)."""
        await self.adapter.courier.idle()
