"""Slack's endpoint under malformed input and under one very large message: the real Bolt app over real HTTP
on 127.0.0.1 (tests/slack_fake.py's Harness, the real store), every request built here byte by byte.

The fuzz run (on SQLite and PostgreSQL) is deterministic (``random.Random(SEED)``): a failure names the
case, and the same case comes back on the next run. It mixes requests that must be refused before anything
is parsed (unsigned, badly signed, stale, odd headers: 401, or 400 from aiohttp for headers it cannot read;
over the size limit: 413), signed bodies that do not parse (400), and signed payloads of the right kind
whose fields have the wrong shape (an event or a click Baton ignores or refuses: 200 or 400). Whatever the
request: never a 5xx, never a traceback, never an ERROR log record, staff proven by Slack's team id, and a
normal customer message is still answered afterwards.

The latency test times the acknowledgements of small events arriving on a schedule around a 500 KB
message (on SQLite, whose one connection is the slowest to share).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import hmac
import json
import logging
import random
import re
import statistics
import time
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import structlog
from aiohttp import ClientError, ClientTimeout
from slack_fake import CUSTOMER_TEAM, HOST_TEAM, INTERNAL, SECRET, SHARED, FakeSlack, Harness, envelope, message_event

from adapters import slack_blocks as blocks
from bot.engine import Engine
from bot.service import Service
from bot.store import Store

SEED = 14
CASES = 2400
CONCURRENCY = 8
REFUSED = frozenset({401})
UNREADABLE = frozenset({400})
TOO_LARGE = frozenset({413})
SIGNED_BUT_WRONG = frozenset({200, 400})
"""A signed payload of a known kind with fields of the wrong shape: ignored (200, with a log line) or
refused (400); never 404 (Bolt's "unhandled request"), never 5xx."""


@pytest.fixture
async def slack_on_sqlite(fake: tuple[FakeSlack, str], sqlite_store: Store, bot: Engine) -> AsyncIterator[Harness]:
    """The real app on SQLite, the store of a single process (one connection: the slowest to share)."""
    server, url = fake
    async with Harness(Service(bot, sqlite_store), server, url) as running:
        yield running


def customer(slack: Harness, user: str, text: str) -> dict[str, Any]:
    """A message from a customer the fake's directory does not list (each one new: no repeat contact)."""
    profile = {"real_name": f"Customer {user}", "display_name": "", "name": user.lower(), "team": CUSTOMER_TEAM}
    return slack.message_event(user, text, team=CUSTOMER_TEAM, user_team=CUSTOMER_TEAM, source_team=CUSTOMER_TEAM,
                               user_profile=profile)


# ---- requests, byte by byte ----


@dataclass(frozen=True)
class Case:
    kind: str
    """What the case tries (cases are counted and reported by kind)."""
    body: bytes
    headers: dict[str, str]
    expect: frozenset[int]

    def show(self, limit: int = 300) -> str:
        body = self.body if len(self.body) <= limit else self.body[:limit] + b"...(%d bytes)" % len(self.body)
        headers = {k: v if len(v) <= 80 else f"{v[:40]}...({len(v)} chars)" for k, v in self.headers.items()}
        return f"{self.kind}: headers={headers} body={body!r}"


def sign(body: bytes, stamp: str, secret: str = SECRET) -> str:
    """Slack's v0 signature over the raw bytes (slack-sdk's own helper takes text only)."""
    return "v0=" + hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()


def signed(now: int, kind: str, body: bytes, content_type: str = "application/json", *,
           expect: frozenset[int] = SIGNED_BUT_WRONG, **extra: str) -> Case:
    stamp = str(now)
    return Case(kind, body, {"Content-Type": content_type, "X-Slack-Request-Timestamp": stamp,
                             "X-Slack-Signature": sign(body, stamp), **extra}, expect)


def as_json(value: Any) -> bytes:
    return json.dumps(value).encode()


def as_form(payload: Any) -> bytes:
    return ("payload=" + urllib.parse.quote(json.dumps(payload))).encode()


WRONG: list[Any] = [None, 0, -1, 1.5, 10**30, True, "", "x", "C0NOWHERE", [], [1, "a"], {}, {"id": 5}, [{}],
                    "\u0000", "\ufffd", "<!channel>"]
"""Values of the wrong type or meaning, for any field."""


def wrong(rng: random.Random) -> Any:
    return rng.choice(WRONG)


def nested(rng: random.Random, depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value] if rng.random() < 0.5 else {"a": value}
    return value


def garbage_blocks(rng: random.Random) -> Any:
    return rng.choice([
        "blocks", 5, [5, "x", None], [{"type": 5}], [{"type": "rich_text"}], [{"type": "rich_text", "elements": 5}],
        [{"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": "x"}]}],
        [{"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": [
            {"type": "user", "user_id": 5}, {"type": "channel"}, {"type": "broadcast", "range": []},
            {"type": "link", "url": None, "text": {}}, {"type": "emoji", "name": []},
            {"type": "usergroup", "usergroup_id": {"id": "S1"}}, {"type": "text", "text": ["a"]}]}]}],
        [{"type": "section", "text": {"type": "mrkdwn", "text": None}}],
        [{"type": "rich_text", "elements": [{"type": "rich_text_quote", "elements": [nested(rng, 50)]}]}],
    ])


def garbage_files(rng: random.Random) -> Any:
    return rng.choice([
        "files", 5, [5], ["F1"], [None], [{}], [{"id": 5, "name": ["a"], "filetype": {}}],
        [{"id": "F0X", "file_access": "check_file_info"}], [{"id": "F0X", "name": None, "mimetype": 5}],
        [{"id": "F0X", "name": "a" * 5000, "filetype": "pdf"}], {"id": "F0X"},
    ])


def garbage_attachments(rng: random.Random) -> Any:
    return rng.choice([
        "attachments", 5, [5], [None], [{"text": 5}], [{"text": None, "author_name": []}],
        [{"is_share": True, "text": {"a": 1}, "message_blocks": "x"}],
        [{"is_share": True, "message_blocks": [{"message": None}, {"message": {"blocks": 5}}, 5]}],
        [{"is_share": True, "message_blocks": [{"team": "T1", "channel": "C1", "ts": "1.1",
                                                "message": {"blocks": garbage_blocks(rng)}}]}],
        [{"fallback": ["x"], "author_id": 5, "files": "f"}],
    ])


EVENT_FIELDS: dict[str, Callable[[random.Random], Any]] = {
    "ts": lambda r: r.choice([1700000000.1, None, "abc", "1e400", "nan", "inf", "-1", "99999999999999999999.1",
                              "", "1.2.3", [], {"ts": "1"}, " 1700000000.000100"]),
    "thread_ts": lambda r: r.choice([1.5, "abc", "nan", "1e400", {}, [], "", "0", "-5.0"]),
    "event_ts": lambda r: r.choice([None, 5, [], {}, "x" * 100]),
    "channel": lambda r: r.choice([None, 5, [SHARED], {"id": SHARED}, "", INTERNAL, "C0ELSEWHERE"]),
    "text": lambda r: r.choice([{"a": 1}, ["a", "b"], 5, None, True, "", "<@U0BATON> <!here> &amp;lt;", "\u0000" * 10,
                                "<" * 3000, "&" * 3000 + ";", "<http://a|" * 500, "x" * 40_000]),
    "user": lambda r: r.choice([None, 5, ["U0DANA"], {"id": "U0DANA"}, "", "U0BATON"]),
    "files": garbage_files,
    "blocks": garbage_blocks,
    "attachments": garbage_attachments,
    "user_profile": lambda r: r.choice(["profile", 5, [], {"real_name": 5, "display_name": [], "team": {}}]),
    "team": lambda r: r.choice([None, 5, [], {}, HOST_TEAM]),
    "user_team": lambda r: r.choice([None, 5, [], {}, HOST_TEAM]),
    "source_team": lambda r: r.choice([None, 5, [], {}]),
    "subtype": lambda r: r.choice([5, [], {}, "", "file_share", "thread_broadcast", "me_message", "bot_message",
                                   "message_deleted", "message_changed", "message_replied", "huddle_thread",
                                   "something_new"]),
    "type": lambda r: r.choice([5, None, [], "", "reaction_added", "app_home_opened", "member_joined_channel",
                                "app_mention", "file_shared", "channel_created", "something_new"]),
    "bot_id": lambda r: r.choice([5, [], {}, ""]),
    "edited": lambda r: r.choice(["yes", 5, [], {"ts": 5}]),
    "message": lambda r: r.choice([None, "message", 5, [], {}, {"user": 5, "ts": None, "text": []},
                                   {"user": "U0DANA", "ts": "1.1", "text": {"a": 1}, "edited": "x"}]),
    "previous_message": lambda r: r.choice([None, "prev", 5, [], {"text": []}]),
}

ENVELOPE_FIELDS: dict[str, Callable[[random.Random], Any]] = {
    "event": lambda r: r.choice([None, [], [{"type": "message"}], "event", 5, True, {}]),
    "type": lambda r: r.choice([None, 5, [], "", "app_rate_limited", "something_new", "block_actions"]),
    "event_id": lambda r: r.choice([None, 5, [], {}, "", "x" * 500]),
    "team_id": lambda r: r.choice([None, 5, [], {}, "", "T0OTHER"]),
    "api_app_id": lambda r: r.choice([None, 5, [], {}]),
    "authorizations": lambda r: r.choice([None, "auth", 5, [], [5], ["a"], [{}], [{"team_id": 5, "user_id": []}]]),
    "enterprise": lambda r: r.choice([5, [], {"name": "x"}, "E1", True]),
    "enterprise_id": lambda r: r.choice([5, [], {}]),
    "is_ext_shared_channel": lambda r: r.choice(["yes", 5, None]),
    "event_time": lambda r: r.choice(["now", None, [], 10**20]),
    "event_context": lambda r: r.choice([5, [], None]),
    "context_team_id": lambda r: r.choice([5, [], {}]),
    "is_enterprise_install": lambda r: r.choice(["maybe", 5, [], {}]),
    "token": lambda r: r.choice([5, None, [], "x" * 3000]),
}


def wrap(event: dict[str, Any], n: int, now: int) -> dict[str, Any]:
    return {**envelope(event, event_id=f"EvFuzz{n:06d}"), "event_time": now}


def a_message(rng: random.Random, n: int, now: int) -> dict[str, Any]:
    ts = f"{now}.{n:06d}"
    user = rng.choice(["U0DANA", "U0ALEX", "U0SAM", "U0UNKNOWN", "U0CFUZZ1"])
    return message_event(user, rng.choice(["hello", "How do I export a transcript?", "Our meeting is gone!!",
                                           "refund now", ""]), ts=ts,
                         thread_ts=rng.choice([None, None, ts, f"{now - 30}.000001"]))


def wrong_event(rng: random.Random, n: int, now: int) -> Case:
    """A signed event whose event fields (1 to 4 of them) have the wrong type or shape."""
    event = a_message(rng, n, now)
    changed = rng.sample(sorted(EVENT_FIELDS), rng.randint(1, 4))
    for name in changed:
        event[name] = EVENT_FIELDS[name](rng)
    if rng.random() < 0.1:
        del event[rng.choice(sorted(event))]
    return signed(now, "event:" + "+".join(sorted(changed)), as_json(wrap(event, n, now)))


def wrong_envelope(rng: random.Random, n: int, now: int) -> Case:
    body = wrap(a_message(rng, n, now), n, now)
    changed = rng.sample(sorted(ENVELOPE_FIELDS), rng.randint(1, 2))
    for name in changed:
        body[name] = ENVELOPE_FIELDS[name](rng)
    if rng.random() < 0.2:
        body.pop(rng.choice(sorted(body)), None)
    return signed(now, "envelope:" + "+".join(sorted(changed)), as_json(body))


def odd_event(rng: random.Random, n: int, now: int) -> Case:
    """Kinds Baton does not handle, and the URL check without its challenge."""
    choice = rng.randrange(6)
    if choice == 0:
        body: Any = {"token": "legacy", "type": "url_verification"}
        if rng.random() < 0.5:
            body["challenge"] = wrong(rng)
        return signed(now, "url_verification without a challenge", as_json(body), expect=frozenset({200, 400}))
    if choice == 1:
        kind = rng.choice(["reaction_added", "app_home_opened", "member_joined_channel", "team_join", "x" * 200,
                           "tokens_revoked", "app_uninstalled", "link_shared", "file_shared"])
        event = {"type": kind, "user": wrong(rng), "channel": rng.choice([SHARED, wrong(rng)]),
                 "item": wrong(rng), "event_ts": f"{now}.{n:06d}"}
        return signed(now, "unknown event type", as_json(wrap(event, n, now)))
    if choice == 2:
        event = a_message(rng, n, now)
        event.update(subtype="message_changed", hidden=True)
        event.pop("user", None)
        if rng.random() < 0.5:
            event.pop("message", None)
        else:
            event["message"] = EVENT_FIELDS["message"](rng)
        event["previous_message"] = EVENT_FIELDS["previous_message"](rng)
        return signed(now, "message_changed without a usable message", as_json(wrap(event, n, now)))
    if choice == 3:
        event = a_message(rng, n, now)
        event["type"] = "app_mention"
        event[rng.choice(["text", "user", "ts", "channel", "blocks"])] = wrong(rng)
        return signed(now, "app_mention with a wrong field", as_json(wrap(event, n, now)))
    if choice == 4:
        body = {"type": rng.choice(["app_rate_limited", "event_callback"]), "token": "legacy", "team_id": HOST_TEAM,
                "minute_rate_limited": wrong(rng), "api_app_id": "A0BATON"}
        return signed(now, "no event at all", as_json(body))
    event = a_message(rng, n, now)
    event["text"] = "DEEP"
    depth = rng.choice([100, 500, 900, 990, 1_100])
    opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
    body = as_json(wrap(event, n, now)).replace(b'"DEEP"', opener * depth + b"1" + closer * depth, 1)
    return signed(now, "text nested deep", body, expect=SIGNED_BUT_WRONG if depth < 1_000 else UNREADABLE)


ACTIONS = [blocks.CLAIM, f"{blocks.LOOP_IN}:engineering", f"{blocks.LOOP_IN}:", f"{blocks.LOOP_IN}:nowhere",
           blocks.SEND, blocks.RESOLVE, blocks.APPROVE, blocks.REJECT, blocks.ESCALATE, blocks.TAG, blocks.PROMOTE,
           "unknown_action", "", "baton_claim_x"]


def interaction(rng: random.Random, n: int, now: int) -> Case:
    """A signed click, modal submission, closed modal or shortcut with missing or wrong fields."""
    kind = rng.choice(["block_actions", "block_actions", "view_submission", "view_closed", "shortcut",
                       "message_action", "block_suggestion", "something_new"])
    user: Any = {"id": f"U0FZ{n:05d}", "username": "sam", "name": "sam",  # one person per request
                 "team_id": rng.choice([HOST_TEAM, "T0CUSTOMER"])}
    payload: dict[str, Any] = {
        "type": kind, "user": user, "api_app_id": "A0BATON", "token": "legacy",
        "trigger_id": f"{n}.{now}.fuzz", "team": {"id": HOST_TEAM, "domain": "nw"},
        "enterprise": None, "is_enterprise_install": False,
    }
    broken = []
    if kind == "block_actions":
        action: dict[str, Any] = {"action_id": rng.choice(ACTIONS), "block_id": "baton_card_actions", "type": "button",
                                  "value": rng.choice(["c-does-not-exist", "", "x" * 5000, "0", "../..", "' OR 1=1"]),
                                  "action_ts": f"{now}.{n:06d}"}
        payload.update(container={"type": "message", "message_ts": "1.1", "channel_id": INTERNAL},
                       channel={"id": INTERNAL, "name": "support-handoffs"},
                       message={"type": "message", "ts": "1.1", "text": "handoff"}, actions=[action])
        for name in rng.sample(["value", "action_id", "type", "block_id"], rng.randint(0, 2)):
            if rng.random() < 0.7:
                action[name] = wrong(rng)
            else:
                del action[name]
            broken.append(f"action.{name}")
        if rng.random() < 0.2:
            payload["actions"] = rng.choice([None, "actions", [], [5], [None]])
            broken.append("actions")
    elif kind in ("view_submission", "view_closed"):
        view: Any = {"id": "V0FUZZ", "type": "modal", "callback_id": rng.choice([blocks.SEND_VIEW, "other", 5]),
                     "private_metadata": rng.choice(["c-does-not-exist", "", 5, None, ["c"]]),
                     "team_id": HOST_TEAM, "state": {"values": {blocks.MESSAGE_BLOCK: {blocks.MESSAGE_INPUT: {
                         "type": "plain_text_input", "value": rng.choice(["hello", None, 5, ["x"], "<!channel>"])}}}}}
        if rng.random() < 0.3:
            view["state"] = rng.choice([None, "state", {"values": 5}, {"values": {blocks.MESSAGE_BLOCK: 5}},
                                        {"values": {blocks.MESSAGE_BLOCK: {blocks.MESSAGE_INPUT: "x"}}}])
            broken.append("view.state")
        if rng.random() < 0.15:
            view = rng.choice([None, "view", 5, [], {}])
            broken.append("view")
        payload["view"] = view
    elif kind in ("shortcut", "message_action"):
        payload["callback_id"] = rng.choice(["baton_shortcut", 5, None, ""])
        payload["message"] = rng.choice([None, 5, {"text": []}])
    else:
        payload["action_id"] = wrong(rng)
        payload["value"] = wrong(rng)
    for name in rng.sample(["user", "team", "trigger_id", "enterprise", "is_enterprise_install", "user.team_id",
                            "user.id", "api_app_id", "container", "channel"], rng.randint(0, 3)):
        broken.append(name)
        if name.startswith("user."):
            if isinstance(payload.get("user"), dict):
                payload["user"].pop(name[5:], None)
        elif rng.random() < 0.5:
            payload.pop(name, None)
        else:
            payload[name] = wrong(rng)
    return signed(now, f"{kind}:" + ("+".join(sorted(broken)) or "unknown values"), as_form(payload),
                  "application/x-www-form-urlencoded")


def unsigned(rng: random.Random, n: int, now: int) -> Case:
    """Refused before anything is read: 401 (or 400 when aiohttp itself cannot read the headers)."""
    body = rng.choice([as_json(wrap(a_message(rng, n, now), n, now)), b"\xff\xfe{", b"",
                       b"[" * 50_000, b"payload=%7B", b'{"type": "url_verification", "challenge": "x"}'])
    content_type = rng.choice(["application/json", "application/x-www-form-urlencoded", "text/plain", "",
                               "multipart/form-data; boundary=x", "application/json; charset=latin-1"])
    headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": str(now),
               "X-Slack-Signature": sign(body, str(now))}
    choice = rng.randrange(14)
    kind = ""
    if choice == 0:
        kind = "no signature headers"
        del headers["X-Slack-Signature"], headers["X-Slack-Request-Timestamp"]
    elif choice == 1:
        kind = "random signature"
        headers["X-Slack-Signature"] = "v0=" + f"{rng.getrandbits(256):064x}"
    elif choice == 2:
        kind = "signed with another secret"
        headers["X-Slack-Signature"] = sign(body, str(now), "not-the-secret")
    elif choice == 3:
        kind = "signature of another body"
        headers["X-Slack-Signature"] = sign(body + b" ", str(now))
    elif choice == 4:
        kind = "stale timestamp"
        stamp = str(now - rng.choice([301, 3600, 10**6, now]))
        headers.update({"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": sign(body, stamp)})
    elif choice == 5:
        kind = "timestamp in the future"
        stamp = str(now + rng.choice([400, 10**6, 10**12]))  # 400: still ahead when the run ends
        headers.update({"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": sign(body, stamp)})
    elif choice == 6:
        kind = "non-numeric timestamp"
        stamp = rng.choice(["soon", "", "1e9", "-5", f"{now}.0", "0x10", "NaN", "9" * 400, "+" + str(now),
                            "1_700_000_000", "\u00b2", f"{now}\u00b2", "\u00b9" * 10, f"{now},{now}"])
        headers.update({"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": sign(body, stamp)})
    elif choice == 7:
        kind = "signature in another form"
        good = headers["X-Slack-Signature"]
        headers["X-Slack-Signature"] = rng.choice(["", "v0=", good.upper(), "v1=" + good[3:], good[3:], good + "0",
                                                   good[:-1], f"{good},{good}", "v0=" + "zz" * 32, "v0=" + "0" * 64])
    elif choice == 8:
        kind = "huge signature header"
        headers["X-Slack-Signature"] = "v0=" + "a" * rng.choice([4_000, 8_000, 9_000, 60_000])
    elif choice == 9:
        kind = "many headers"
        headers.update({f"X-Fuzz-{i}": "y" * 100 for i in range(rng.choice([50, 150, 400]))})
        headers["X-Slack-Signature"] = "v0=" + f"{rng.getrandbits(256):064x}"
    elif choice == 10:
        kind = "huge timestamp header"
        headers["X-Slack-Request-Timestamp"] = "1" * rng.choice([1_000, 9_000])
    elif choice == 11:
        kind = "only a timestamp"
        del headers["X-Slack-Signature"]
    elif choice == 12:
        kind = "only a signature"
        del headers["X-Slack-Request-Timestamp"]
    else:
        kind = "retry headers, bad signature"
        headers.update({"X-Slack-Retry-Num": rng.choice(["1", "x", "-1", "9" * 50]),
                        "X-Slack-Retry-Reason": "http_timeout"})
        headers["X-Slack-Signature"] = "v0=" + f"{rng.getrandbits(256):064x}"
    if content_type == "":
        del headers["Content-Type"]
    big_header = kind in ("huge signature header", "many headers", "huge timestamp header")
    return Case(f"unsigned: {kind}", body, headers, REFUSED | UNREADABLE if big_header else REFUSED)


def unreadable(rng: random.Random, n: int, now: int) -> Case:
    """Signed bodies that are not a Slack request: 400."""
    valid = as_json(wrap(a_message(rng, n, now), n, now))
    choice = rng.randrange(13)
    if choice == 0:
        return signed(now, "signed, not UTF-8", rng.choice([b"\xff\xfe", b'{"text": "\xc3\x28"}', b"\x80" * 10,
                                                       valid[:20] + b"\xed\xa0\x80" + valid[20:]]),
                      expect=UNREADABLE)
    if choice == 1:
        cut = rng.randrange(1, len(valid) - 1)
        return signed(now, "signed, broken JSON", valid[:cut], expect=UNREADABLE)
    if choice == 2:
        depth = rng.choice([1_000, 5_000, 100_000])
        opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
        body = b'{"type": "event_callback", "event": ' + opener * depth + b"1" + closer * depth + b"}"
        return signed(now, "signed, JSON nested too deep", body, expect=UNREADABLE)
    if choice == 3:
        return signed(now, "signed, JSON that is not an object", rng.choice([b"[]", b"1", b'"x"', b"null", b"true",
                                                                        b"[1, 2, 3]", b"1e400"]),
                      expect=UNREADABLE)
    if choice == 4:
        content_type = rng.choice(["application/json", "application/x-www-form-urlencoded", "text/plain"])
        return signed(now, "signed, empty body", b"", content_type, expect=UNREADABLE)
    if choice == 5:
        body = rng.choice([b"payload=", b"payload=%7B", b"payload=%5B%5D", b"payload=null", b"payload=1",
                           b"payload=%FF%FE", b"payload=%7B%22type%22", b"payload=" + b"%5B" * 5000,
                           b"payload=%22x%22", b"payload"])
        return signed(now, "signed, a form whose payload is broken", body, "application/x-www-form-urlencoded",
                      expect=UNREADABLE)
    if choice == 6:
        body = rng.choice([b"a=b&&&c", b"=", b"&", b"%", b"a=%zz", b"x" * 1000, b"token=x&team_id=T1",
                           b"command=/baton&text=hi"])
        return signed(now, "signed, a form without a payload", body, "application/x-www-form-urlencoded",
                      expect=UNREADABLE)
    if choice == 7:
        content_type = rng.choice(["text/plain", "application/x-www-form-urlencoded", "application/xml",
                                   "multipart/form-data; boundary=x", "application/octet-stream"])
        body = rng.choice([b'{"a=b"}', b"{not json=1", b'{"type": "event_callback"=', b"{=}", b"{&payload=1"])
        return signed(now, "signed, JSON-looking body under another content type", body, content_type,
                      expect=UNREADABLE)
    if choice == 8:
        content_type = rng.choice(["text/plain", "application/xml", "", "application/octet-stream"])
        case = signed(now, "signed, an event under another content type", valid, content_type or "text/plain",
                      expect=SIGNED_BUT_WRONG)
        if not content_type:
            del case.headers["Content-Type"]
        return case
    if choice == 9:
        body = b"\xef\xbb\xbf" + valid
        return signed(now, "signed, JSON with a byte-order mark", body, expect=UNREADABLE)
    if choice == 10:
        body = rng.choice([valid.replace(b"{", b"{\"a\": NaN, ", 1), valid.replace(b"{", b"{\"a\": 1e99999, ", 1),
                           valid.replace(b"{", b"{\"event\": 1, ", 1), valid + b"  \n", valid + b"{}"])
        return signed(now, "signed, JSON at the edges of the grammar", body, expect=SIGNED_BUT_WRONG)
    if choice == 11 and rng.random() < 0.2:  # a few only: each is 1.1 MB
        return signed(now, "signed, over 1 MB", b'{"type": "event_callback", "pad": "' + b"x" * 1_100_000 + b'"}',
                      expect=TOO_LARGE)
    return signed(now, "signed, control characters and lone surrogates in JSON",
                  valid.replace(b'"text": "', b'"text": "\\u0000\\ud800\\udfff\\ud83d', 1), expect=SIGNED_BUT_WRONG)


GENERATORS: list[tuple[float, Callable[[random.Random, int], Case]]] = [
    (0.22, unsigned), (0.18, unreadable), (0.25, wrong_event), (0.08, wrong_envelope), (0.07, odd_event),
    (0.20, interaction),
]


def cases(seed: int = SEED, count: int = CASES, now: int | None = None) -> Iterator[Case]:
    """The fuzz run's requests; ``now`` is the signatures' time (by default the clock's)."""
    rng = random.Random(seed)
    now = int(time.time()) if now is None else now
    weights = [w for w, _ in GENERATORS]
    for n in range(count):
        [(_, generate)] = rng.choices(GENERATORS, weights)
        yield generate(rng, n, now)


# ---- what the logs may not hold ----


class Records(logging.Handler):
    """Every standard-library log record at WARNING or above (aiohttp's "Error handling request", Bolt's
    listener errors and "unhandled request", asyncio's "Task exception was never retrieved")."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Watch:
    events: list[dict[str, Any]]
    stdlib: Records

    def problems(self) -> list[str]:
        found = [f"structlog {e['log_level']}: {e.get('event')} {({k: v for k, v in e.items() if k != 'exc_info'})}"
                 for e in self.events if e.get("exc_info") or e.get("log_level") in ("error", "critical", "exception")]
        found += [f"logging {r.levelname} {r.name}: {r.getMessage()[:300]}" + (
                      f" ({type(r.exc_info[1]).__name__}: {' '.join(str(r.exc_info[1]).split())[:120]}; a traceback)"
                      if r.exc_info else "")
                  for r in self.stdlib.records if r.levelno >= logging.ERROR or r.exc_info]
        return found


class watching:  # noqa: N801 (used as a context manager)
    def __enter__(self) -> Watch:
        self._capture = structlog.testing.capture_logs()
        events = self._capture.__enter__()
        self._handler = Records()
        root = logging.getLogger()
        self._level = root.level
        root.addHandler(self._handler)
        root.setLevel(min(self._level or logging.WARNING, logging.WARNING))
        return Watch(events, self._handler)

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeHandler(self._handler)
        logging.getLogger().setLevel(self._level)
        self._capture.__exit__(None, None, None)


def proven_staff(case: Case) -> tuple[str, str] | None:
    """The user id and trigger id of an interaction from someone Slack says is of the installing team."""
    if not case.body.startswith(b"payload="):
        return None
    try:
        payload = json.loads(urllib.parse.unquote(case.body[8:].decode()))
    except (ValueError, RecursionError):
        return None
    user = payload.get("user") if isinstance(payload, dict) else None
    if isinstance(user, dict) and user.get("team_id") == HOST_TEAM and isinstance(user.get("id"), str):
        return user["id"], str(payload.get("trigger_id"))
    return None


async def post(slack: Harness, case: Case) -> int:
    """The status answered to ``case``; 0 when the server closed the connection or did not answer."""
    assert slack.http is not None
    try:
        async with slack.http.post(slack.url, data=case.body, headers=case.headers,
                                   timeout=ClientTimeout(total=10)) as response:
            await response.read()
            return response.status
    except (ClientError, TimeoutError):
        return 0


async def run_all(slack: Harness, todo: list[Case]) -> list[int]:
    statuses = [0] * len(todo)
    queue = iter(range(len(todo)))

    async def worker() -> None:
        for i in queue:
            statuses[i] = await post(slack, todo[i])

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return statuses


async def test_the_cases_are_deterministic_and_cover_every_kind():
    first = [(c.kind, c.body, c.headers) for c in cases(count=300, now=1_800_000_000)]
    assert first == [(c.kind, c.body, c.headers) for c in cases(count=300, now=1_800_000_000)]
    kinds = {c.kind.split(":")[0] for c in cases()}
    assert {"block_actions", "view_submission", "view_closed", "shortcut", "unsigned", "signed, not UTF-8",
            "signed, broken JSON", "signed, JSON nested too deep", "signed, empty body", "unknown event type",
            "url_verification without a challenge", "message_changed without a usable message"} <= kinds


async def test_thousands_of_malformed_requests_get_a_clean_refusal_and_the_bot_still_answers(slack: Harness):
    todo = list(cases())
    started = time.monotonic()
    with watching() as watch:
        statuses = await run_all(slack, todo)
        await slack.settle()
        sent = time.monotonic() - started
        final = customer(slack, "U0CFINAL", "How do I connect my Outlook calendar?")
        assert (await slack.send_event(final))[0] == 200
        await slack.settle()
    print(f"\n{len(todo)} malformed requests in {sent:.1f} s; statuses: {dict(sorted(Counter(statuses).items()))}")
    by_kind: dict[str, Counter[int]] = {}
    for case, status in zip(todo, statuses, strict=True):
        by_kind.setdefault(case.kind.split(":")[0], Counter())[status] += 1
    for kind, seen in sorted(by_kind.items()):
        print(f"  {kind}: {dict(sorted(seen.items()))}")
    failures: list[str] = []

    wrong_status = [(status, case) for case, status in zip(todo, statuses, strict=True) if status not in case.expect]
    if wrong_status:
        shown: dict[tuple[str, int], tuple[int, Case]] = {}
        for status, case in wrong_status:  # how many, and the shortest example, of each kind and status
            key = (case.kind.split(":")[0], status)
            count, shortest = shown.get(key, (0, case))
            shown[key] = (count + 1, case if len(case.body) < len(shortest.body) else shortest)
        failures.append(f"{len(wrong_status)} requests got an unexpected status (0: no answer):\n" + "\n".join(
            f"  {status} x{count} <- {case.show()}" for (_, status), (count, case) in sorted(shown.items())))
    if problems := watch.problems():
        alike: Counter[str] = Counter(re.sub(r"\d+", "N", problem)[:400] for problem in problems)
        failures.append(f"{len(problems)} error log records or tracebacks:\n"
                        + "\n".join(f"  x{count} {problem}" for problem, count in alike.most_common(30)))
    # every refusal says why in one line (aiohttp refuses unreadable headers before Baton sees them)
    refusals = sum(1 for s in statuses if s in (400, 401, 413))
    by_aiohttp = sum(1 for c, s in zip(todo, statuses, strict=True) if s == 400 and c.expect == REFUSED | UNREADABLE)
    logged = sum(1 for e in watch.events if e.get("event") == "slack_request_refused")
    if not refusals - by_aiohttp <= logged <= refusals:
        failures.append(f"{refusals} refusals ({by_aiohttp} by aiohttp) but {logged} 'slack_request_refused' lines")
    # staff is proven by Slack's team id, never assumed: anyone else gets at most one refusal (the same words
    # whatever they clicked, never what staff are told), and never a modal
    proven = [who for case in todo if (who := proven_staff(case))]
    staff = {user for user, _ in proven}
    told: dict[bool, set[str]] = {True: set(), False: set()}
    for call in slack.fake.calls:
        if call.method == "chat.postEphemeral":
            told[call.args.get("user") in staff].add(str(call.args.get("text")))
    if len(told[False]) > 1 or told[False] & told[True]:
        failures.append(f"users not proven staff were told {sorted(told[False])[:4]} (staff: {sorted(told[True])[:4]})")
    opened = {c.args.get("trigger_id") for c in slack.fake.calls if c.method == "views.open"}
    if strangers := opened - {trigger for _, trigger in proven}:
        failures.append(f"{len(strangers)} modals opened for users not proven staff: {sorted(strangers)[:5]}")
    reply = [p for p in slack.fake.posts(SHARED) if p.get("thread_ts") == final["ts"]]
    if not (len(reply) == 1 and "connect-calendars" in reply[0]["text"]):
        failures.append(f"a normal question afterwards was answered with {reply}")
    print(f"{len(wrong_status)} unexpected statuses; {len(problems)} error log records")
    assert not failures, "\n\n".join(failures)


# ---- one very large message does not hold the others up ----


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


GAP = 0.005
"""Seconds between two small events' arrivals (200 a second), whenever the answers come."""
RETRY = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}


async def test_a_500_kb_message_does_not_delay_the_acknowledgement_of_other_events(slack_on_sqlite: Harness):
    """Small customer messages arrive every 5 ms, as Slack sends them (on a schedule, not when the last one
    was answered); each one's acknowledgement is timed from the moment it was due, so a stalled event loop or
    a busy database delays every event due meanwhile. First 200 of them alone (the baseline: what this
    machine does under that load), then 200 more from just before a 500,000-character message is sent until
    it has been worked on (if it still is after those, Slack's retries of them follow: stored already,
    acknowledged, not worked on again). Every one is acknowledged well within Slack's 3 seconds, and the big
    one is answered."""
    slack = slack_on_sqlite
    loop = asyncio.get_running_loop()
    big = slack.message_event("U0DANA", "Our recording is missing and " + "the meeting went on and on " * 18_519)
    assert len(big["text"]) >= 500_000
    warm = [customer(slack, f"U0C{i:04d}", "How do I export a transcript?") for i in range(20)]
    alone = [customer(slack, f"U0B{i:04d}", "How do I export a transcript?") for i in range(200)]
    fresh = [customer(slack, f"U0C{i:04d}", "How do I export a transcript?") for i in range(20, 220)]
    big_acked, big_done = asyncio.Event(), asyncio.Event()

    def request(event: dict[str, Any], **headers: str) -> Case:
        return signed(int(time.time()), "latency", as_json(envelope(event, event_id=f"EvLat{event['ts']}")), **headers)

    async def schedule(events: list[dict[str, Any]], *, until: asyncio.Event | None = None) -> dict[str, list[float]]:
        """Send ``events`` one every ``GAP``, then (while ``until`` is not set) retries of them; each one's
        seconds from due to acknowledged, by when it was acknowledged: before, while or after the big one."""
        timed: dict[str, list[float]] = {"before": [], "during": [], "after": []}
        answers: set[asyncio.Task[None]] = set()
        all_due = asyncio.Event()
        retries = 0

        async def small(case: Case, due: float) -> None:
            was_done = big_done.is_set()
            status = await post(slack, case)
            assert status == 200
            timed["after" if was_done else "during" if big_acked.is_set() else "before"].append(loop.time() - due)

        def arrive(i: int, due: float) -> None:
            nonlocal retries
            if i < len(events):
                case = request(events[i])
            elif until is not None and not until.is_set() and i < 2_000:
                case = request(events[retries % len(events)], **RETRY)
                retries += 1
            else:
                all_due.set()
                return
            task = loop.create_task(small(case, due))
            answers.add(task)
            task.add_done_callback(answers.discard)
            loop.call_at(due + GAP, arrive, i + 1, due + GAP)

        arrive(0, loop.time())
        await asyncio.wait_for(all_due.wait(), 30)
        await asyncio.gather(*answers)
        timed["retries"] = [float(retries)]
        return timed

    async def the_big_one() -> tuple[float, float]:
        """Seconds until it was acknowledged, and until it was worked on (answered, the turn committed)."""
        start = loop.time()
        assert await post(slack, request(big)) == 200
        acked = loop.time() - start
        big_acked.set()
        await slack.tracker.wait(f"EvLat{big['ts']}", timeout=30)
        big_done.set()
        return acked, loop.time() - start

    # What earlier tests left in this process is set aside from the garbage collector: a full collection over
    # it takes 100+ ms here, and would be measured as if this message had caused it.
    gc.collect()
    gc.freeze()
    try:
        with watching() as watch:
            for event in warm:  # the first requests open connections
                assert await post(slack, request(event)) == 200
            baseline = await schedule(alone)
            await slack.settle()
            with_big = loop.create_task(schedule(fresh, until=big_done))
            big_ack, big_worked = await the_big_one()
            timed = await with_big
            await slack.settle()
    finally:
        gc.unfreeze()
    base = baseline["before"]
    latencies = [t for phase in ("before", "during", "after") for t in timed[phase]]
    during = timed["during"]
    base_p99 = percentile(base, 0.99) * 1000
    p50, p99 = statistics.median(latencies) * 1000, percentile(latencies, 0.99) * 1000
    print(f"\n500 KB message: acknowledged in {big_ack * 1000:.0f} ms, worked on in {big_worked * 1000:.0f} ms. "
          f"Small events, one every {GAP * 1000:.0f} ms: alone (baseline, {len(base)}): "
          f"p50 {statistics.median(base) * 1000:.1f} ms, p99 {base_p99:.1f} ms; "
          f"with the big one ({len(latencies)}: {len(timed['before'])} answered before it, {len(during)} while it "
          f"was worked on, {len(timed['after'])} after; {timed['retries'][0]:.0f} of them retries): p50 {p50:.1f} ms, "
          f"p99 {p99:.1f} ms, max {max(latencies) * 1000:.1f} ms; the big one adds {p99 - base_p99:.1f} ms to the p99")
    assert not watch.problems(), watch.problems()
    assert big_done.is_set() and len(latencies) >= 200 and during
    # Slack retries an event not acknowledged within 3 seconds: none may come near that (it did, before: the
    # message held the loop for seconds). What it adds to the p99, measured with the server in a process of its
    # own on its own core, is a benchmark's (benchmarks/slack_ack.py: 100 ms at most); here the test, the fake
    # and the server share one event loop with whatever the tests before left running, so it is printed only.
    assert max(latencies) < 3.0 and big_ack < 3.0, f"an acknowledgement took {max(latencies):.2f} s"
    [_reply] = [p for p in slack.fake.posts(SHARED) if p.get("thread_ts") == big["ts"]]  # and it was answered


async def open_card(slack: Harness) -> tuple[str, str]:
    """A billing dispute handed over: (conversation id, card ts), for payloads that reach a listener."""
    event = customer(slack, "U0CCARD", "you charged us twice, I want a refund NOW")
    assert (await slack.send_event(event))[0] == 200
    await slack.settle()
    [card] = [p for p in slack.fake.posts(INTERNAL) if not p.get("thread_ts")]
    conversation = await slack.service.store.find_conversation("slack", HOST_TEAM, SHARED, event["ts"])
    assert conversation is not None
    return conversation.id, card["posted_ts"]


def malformed_on_a_real_card(slack: Harness, conversation: str, card_ts: str) -> dict[str, dict[str, Any]]:
    """Staff payloads on a real conversation whose other fields are wrong: they get past the staff and
    conversation checks, into what the listeners read."""
    click = slack.click_payload("U0SAM", blocks.SEND, conversation, card_ts)
    submit = {"type": "view_submission", "team": {"id": HOST_TEAM}, "user": {"id": "U0SAM", "team_id": HOST_TEAM},
              "trigger_id": "1.view.t", "view": {"id": "V1", "type": "modal", "callback_id": blocks.SEND_VIEW,
                                                 "private_metadata": conversation}}
    return {
        "state is a string": {**submit, "view": {**submit["view"], "state": "state"}},
        "state values a number": {**submit, "view": {**submit["view"], "state": {"values": 5}}},
        "state input not an object": {**submit, "view": {**submit["view"], "state": {"values": {"message": {
            "text": "x"}}}}},
        "view without a type": {**submit, "view": {k: v for k, v in submit["view"].items() if k != "type"}},
        "view of a workflow step": {**submit, "view": {**submit["view"], "type": "workflow_step"}},
        "workflow_step_edit": {"type": "workflow_step_edit", "callback_id": "x", "user": {"id": "U0SAM"},
                               "trigger_id": "2.t"},
        "send without a trigger": {k: v for k, v in click.items() if k != "trigger_id"},
        "response_urls a number": {**submit, "response_urls": 5},
        "authorizations with a numeric team": {**click, "authorizations": [{"team": 5}]},
        "no user, a numeric message user": {**{k: v for k, v in click.items() if k != "user"},
                                            "message": {**click["message"], "user": 5}},
    }


async def test_malformed_interactions_on_a_real_card_get_a_clean_answer(slack: Harness):
    conversation, card_ts = await open_card(slack)
    before = len(slack.fake.posts(SHARED))
    statuses = {}
    with watching() as watch:
        for name, payload in malformed_on_a_real_card(slack, conversation, card_ts).items():
            statuses[name] = await slack.interact(payload, wait=False)
        await slack.settle()
    print(f"\nmalformed interactions on a real card: {statuses}")
    assert all(status in (200, 400) for status in statuses.values()), statuses
    assert watch.problems() == []
    assert len(slack.fake.posts(SHARED)) == before  # no malformed submission sent anything to the customer
