"""The runtime under crashes, outages and many processes: ``python -m bot run`` as real OS processes.

Each test runs Baton as separate processes (:class:`bot_process.Bot`), serving signed Slack events from a
simulated Slack that retries as Slack does (:class:`slack_sender.SlackSender`), and posting to a fake of
the Web API (:class:`slack_fake.FakeSlack`) served from this test process on 127.0.0.1. What is
asserted is what Slack would show: per customer thread, how many answers; per conversation, how many
handoff cards; per outbox row, how many messages carry its id. Nothing sleeps to wait for something: the
tests wait on log lines, on the fake's calls, on HTTP answers, and (for "nothing is left to do") on the
database, each with a deadline; the only sleeps set a scenario's pace (a burst's rate, Slack's retry
schedule, the gap between two messages, the 10 s of an outage).

Run with ``pytest -s tests/test_runtime.py`` to see one line of numbers per scenario.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pg
import pytest
import sqlalchemy as sa
from aiohttp import ClientSession, ClientTimeout
from bot_process import Bot, free_port, start_bots
from slack_fake import HOST_TEAM, INTERNAL, OUTBOX_EVENT, SECRET, SHARED, TOKEN, FakeSlack
from slack_sender import ACK_WITHIN, SlackSender

from adapters import slack_blocks as blocks
from bot.store import Store

HOW_TO = [  # (question, the help-center article its answer cites)
    ("How do I connect my Outlook calendar?", "connect-calendars"),
    ("How can I change the language of the transcription?", "languages"),
    ("How do I stop the notetaker from joining my meetings?", "auto-join"),
    ("How do I add a teammate to our workspace?", "invite-teammates"),
]
ESCALATIONS = [  # each hands over: the honest notice in the thread, and a card in the internal channel
    "This is ridiculous. You charged us twice for November and I want a refund NOW.",
    "I want to talk to a person please.",
    "We were billed twice this month, please refund the duplicate charge.",
]
ARTICLES = "https://help.notewise.example/articles/"
HANDOFF_NOTICE = "person from our team"
SETTLE_WITHIN = 100.0
"""Seconds for everything acknowledged to be answered and nothing left pending, after the last disruption:
rows a killed process had taken wait out their lease (60 s) before another worker takes them."""


# ---- fixtures and helpers ----


@pytest.fixture
async def processes() -> AsyncIterator[list[Bot]]:
    """Every process a test starts (register it here): killed at the end whatever happened."""
    started: list[Bot] = []
    yield started
    await asyncio.gather(*(b.kill() for b in started))


def bot_env(api_url: str, port: int, database_url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": api_url,
            "BATON_CUSTOMER_CHANNELS": SHARED, "BATON_INTERNAL_CHANNEL": INTERNAL, "PORT": str(port),
            "BATON_DATABASE_URL": database_url, "SLACK_APP_TOKEN": "", "DISCORD_TOKEN": "", "OPENAI_API_KEY": "",
            "BATON_LOG_LEVEL": "info", **extra}


def events_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/slack/events"


@dataclass
class Burst:
    """Customer messages, each opening its own thread (a new customer each: no repeat contacts)."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    kind: dict[str, str] = field(default_factory=dict)
    """Thread ts -> ``how_to`` or ``escalation``."""
    article: dict[str, str] = field(default_factory=dict)
    """Thread ts of a how-to question -> the article its answer must cite."""
    thread_of: dict[str, str] = field(default_factory=dict)
    """Event id -> its thread ts."""

    @classmethod
    def of(cls, sender: SlackSender, count: int, *, first: int = 0) -> Burst:
        burst = cls()
        base = int(time.time())
        for n in range(first, first + count):
            ts = f"{base}.{n:06d}"
            if n % 3 == 2:
                text = ESCALATIONS[(n // 3) % len(ESCALATIONS)]
                burst.kind[ts] = "escalation"
            else:
                text, article = HOW_TO[n % len(HOW_TO)]
                burst.kind[ts], burst.article[ts] = "how_to", article
            body = sender.customer_message(f"U0C{n:05d}", text, ts=ts)
            burst.bodies.append(body)
            burst.thread_of[body["event_id"]] = ts
        return burst

    def acknowledged(self, sender: SlackSender) -> set[str]:
        return {self.thread_of[e] for e in sender.acknowledged if e in self.thread_of}


def replies_per_thread(fake: FakeSlack) -> dict[str, list[dict[str, Any]]]:
    """The bot's messages in the customer channel's threads, per thread ts, oldest first (what Slack shows)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for m in fake.messages.get(SHARED, []):
        if m.get("bot_id") and m.get("thread_ts") and m["thread_ts"] != m["ts"]:
            out.setdefault(m["thread_ts"], []).append(m)
    return out


_PERMALINK = re.compile(rf"archives/{SHARED}/p(\d+)")


def cards_per_thread(fake: FakeSlack) -> tuple[Counter[str], int]:
    """Top-level handoff cards in the internal channel per customer thread (found by the card's permalink
    to it), and how many cards name no thread."""
    cards: Counter[str] = Counter()
    unplaced = 0
    for m in fake.messages_in(INTERNAL):
        found = _PERMALINK.search(json.dumps(m.get("blocks") or []))
        if found is None:
            unplaced += 1
        else:
            digits = found.group(1)
            cards[f"{digits[:-6]}.{digits[-6:]}"] += 1
    return cards, unplaced


def posts_per_outbox_row(fake: FakeSlack) -> Counter[str]:
    """How many of the bot's messages in Slack carry each outbox id in their metadata (delivered once: 1
    each); ``""`` counts the bot's messages that carry none (a duplicate of those would go unseen)."""
    seen: Counter[str] = Counter()
    for kept in fake.messages.values():
        for m in kept:
            metadata = m.get("metadata") or {}
            if metadata.get("event_type") == OUTBOX_EVENT:
                seen[str((metadata.get("event_payload") or {}).get("outbox_id"))] += 1
            elif m.get("bot_id"):
                seen[""] += 1
    return seen


def all_answered(fake: FakeSlack, burst: Burst, threads: Iterable[str]) -> bool:
    replies = replies_per_thread(fake)
    cards, _ = cards_per_thread(fake)
    return all(t in replies and (burst.kind[t] != "escalation" or t in cards) for t in threads)


async def database_counts(url: str) -> dict[str, dict[str, int]]:
    """Rows per status in the inbox and the outbox."""
    store = Store(url)
    try:
        async with store.engine.connect() as conn:
            counts: dict[str, dict[str, int]] = {}
            for table in ("inbox", "outbox"):
                rows = (await conn.execute(sa.text(f"SELECT status, count(*) FROM {table} GROUP BY status"))).all()
                counts[table] = {str(s): int(n) for s, n in rows}
            return counts
    finally:
        await store.close()


async def nothing_pending(url: str, timeout: float = SETTLE_WITHIN) -> dict[str, dict[str, int]]:
    """Poll the database (the processes give no signal for this) until no inbox or outbox row is pending."""
    deadline = time.monotonic() + timeout
    while True:
        counts = await database_counts(url)
        if not counts["inbox"].get("pending") and not counts["outbox"].get("pending"):
            return counts
        assert time.monotonic() < deadline, f"still pending after {timeout:.0f} s: {counts}"
        await asyncio.sleep(0.25)  # a poll with a deadline: the database is the only witness


@dataclass
class Verdict:
    acknowledged: int
    answered_once: int
    unanswered: list[str]
    answered_twice: list[str]
    wrong_answer: list[str]
    cards_once: int
    cards_missing: list[str]
    cards_twice: list[str]
    stray_cards: list[str]
    unplaced_cards: int
    duplicate_rows: list[str]
    without_metadata: int

    def problems(self) -> dict[str, Any]:
        """Everything that should be empty or zero and is not."""
        return {k: v for k, v in self.__dict__.items()
                if v and (isinstance(v, list) or k in ("unplaced_cards", "without_metadata"))}


def judge(fake: FakeSlack, burst: Burst, acknowledged: set[str]) -> Verdict:
    """Every acknowledged message answered exactly once (and rightly), every card posted exactly once; and
    for every thread, acknowledged or not, never two answers or two cards."""
    replies = replies_per_thread(fake)
    cards, unplaced = cards_per_thread(fake)
    twice = sorted(t for t in burst.kind if len(replies.get(t, [])) > 1)
    wrong = []
    for t in acknowledged:
        if len(replies.get(t, [])) != 1:
            continue
        text = replies[t][0]["text"]
        if burst.kind[t] == "how_to" and ARTICLES + burst.article[t] not in text or \
                burst.kind[t] == "escalation" and HANDOFF_NOTICE not in text:
            wrong.append(t)
    escalations = {t for t in acknowledged if burst.kind[t] == "escalation"}
    per_row = posts_per_outbox_row(fake)
    duplicate_rows = sorted(k for k, n in per_row.items() if k and n > 1)
    return Verdict(
        acknowledged=len(acknowledged),
        answered_once=sum(len(replies.get(t, [])) == 1 for t in acknowledged),
        unanswered=sorted(t for t in acknowledged if t not in replies), answered_twice=twice, wrong_answer=wrong,
        cards_once=sum(cards.get(t) == 1 for t in escalations),
        cards_missing=sorted(t for t in escalations if t not in cards),
        cards_twice=sorted(t for t, n in cards.items() if n > 1),
        stray_cards=sorted(t for t in cards if burst.kind.get(t) != "escalation"), unplaced_cards=unplaced,
        duplicate_rows=duplicate_rows, without_metadata=per_row[""])


async def wait_answered(fake: FakeSlack, burst: Burst, threads: set[str], timeout: float = SETTLE_WITHIN) -> None:
    try:
        await fake.wait_for(lambda f: all_answered(f, burst, threads), timeout=timeout)
    except TimeoutError:
        pass  # judged below, with the numbers


def report(name: str, **numbers: Any) -> None:
    """One line of numbers per scenario (shown with ``pytest -s``, and kept in the test's captured output)."""
    print(f"\n[{name}] " + " ".join(f"{k}={v}" for k, v in numbers.items()))


async def sqlite_or_postgres(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """The URL for the process, and the URL this test reads the same database with."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'baton.db'}", f"sqlite+aiosqlite:///{tmp_path / 'baton.db'}"
    url = await pg.fresh_database(request.getfixturevalue("postgres_server"))
    return url, url


# ---- 1. a crash at any moment loses nothing acknowledged and repeats nothing ----


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_sigkill_at_five_moments_of_a_burst_loses_and_repeats_nothing(
        backend: str, request: pytest.FixtureRequest, fake: tuple[FakeSlack, str], tmp_path: Path,
        processes: list[Bot]) -> None:
    """300 customer messages at 60/s (two in three how-to questions, one in three a billing dispute or a
    request for a person); the process is SIGKILLed once 10, 30, 50, 70 and 90 % of them are acknowledged,
    and started again on the same database each time. Slack retries what was not acknowledged."""
    server, api_url = fake
    process_url, read_url = await sqlite_or_postgres(backend, request, tmp_path)
    port = free_port()
    bot = Bot(bot_env(api_url, port, process_url), tmp_path)
    processes.append(bot)
    started = time.monotonic()
    await bot.start()
    kills: list[dict[str, int]] = []
    async with SlackSender(events_url(port)) as sender:
        burst = Burst.of(sender, 300)
        sending = asyncio.create_task(sender.burst(burst.bodies, rate=60))
        for share in (10, 30, 50, 70, 90):
            try:
                await sender.wait_acknowledged(len(burst.bodies) * share // 100, timeout=60)
            except TimeoutError:
                pytest.fail(f"waiting for {share} % acknowledged: {sender.summary()}, kills {kills}\n"
                            + "".join(bot.lines[-30:]))
            sender.up.clear()  # Slack's retries come once it is back
            await bot.kill()
            kills.append({"share": share, "at_s": round(time.monotonic() - started, 1),
                          "acknowledged": len(sender.acknowledged), "answered": len(replies_per_thread(server))})
            await bot.start()
            sender.up.set()
        await sending
        await sender.finished()
        acknowledged = burst.acknowledged(sender)
        await wait_answered(server, burst, acknowledged)
        answered_at = time.monotonic() - started
        counts = await nothing_pending(read_url)
        verdict = judge(server, burst, acknowledged)
        report(f"crash/{backend}", seconds=round(time.monotonic() - started, 1), answered_at_s=round(answered_at, 1),
               kills=kills, sent=len(burst.bodies), acknowledged=len(acknowledged), sender=sender.summary(),
               answered_once=verdict.answered_once, cards_once=verdict.cards_once, database=counts,
               problems=verdict.problems())
    assert bot.starts == 6
    # Slack gives up on an event after 3 retries. Its retries span 6 minutes, these five kills 20 s, so
    # an event may now and then be in flight at four of them: that one was never acknowledged (and is
    # still answered at most once, below). Nearly all must get through, or the scenario proves little.
    assert len(sender.given_up) <= len(burst.bodies) // 50, sender.summary()
    assert not verdict.problems(), verdict.problems()
    assert verdict.answered_once == len(acknowledged)
    assert verdict.cards_once == sum(k == "escalation" for k in burst.kind.values())
    assert not counts["inbox"].get("failed") and not counts["outbox"].get("failed"), counts


# ---- 2. two processes on one PostgreSQL ----


def staff_click(user: str, action_id: str, value: str, card_ts: str, n: int) -> dict[str, Any]:
    """A button click on the card by a member of the vendor's workspace (as ``Harness.click_payload``)."""
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": HOST_TEAM},
        "api_app_id": "A0BATON", "token": "legacy",
        "container": {"type": "message", "message_ts": card_ts, "channel_id": INTERNAL, "is_ephemeral": False},
        "trigger_id": f"{n}.{int(time.time())}.trigger{user}", "team": {"id": HOST_TEAM, "domain": "nw"},
        "enterprise": None, "is_enterprise_install": False, "channel": {"id": INTERNAL, "name": "support-handoffs"},
        "message": {"type": "message", "ts": card_ts, "text": "handoff", "user": "U0BATON", "bot_id": "B0BATON"},
        "state": {"values": {}}, "response_url": "https://hooks.example/actions/T0VENDOR/1/abc",
        "actions": [{"action_id": action_id, "block_id": "baton_card_actions", "value": value, "type": "button",
                     "text": {"type": "plain_text", "text": action_id}, "action_ts": f"{time.time():.6f}"}],
    }


def card_buttons(card: dict[str, Any]) -> dict[str, str]:
    """The card's buttons: action id -> value (the conversation id)."""
    return {e["action_id"]: e.get("value") for b in card.get("blocks") or [] if b.get("type") == "actions"
            for e in b["elements"]}


THREADS = [  # the first message to one process, the second to the other: (first, second, what each answer shows)
    ("Hi, the notetaker never joined our call and there's no recording", "It was Weekly Sync yesterday at 3:30pm PST",
     ("could you tell me", "Weekly Sync, ")),
    ("How do I connect my Outlook calendar?", "And how can I change the language of the transcription?",
     (ARTICLES + "connect-calendars", ARTICLES + "languages")),
]


@pytest.mark.postgres
async def test_two_processes_on_one_postgres(fake: tuple[FakeSlack, str], tmp_path: Path, postgres_server: str,
                                             processes: list[Bot]) -> None:
    """Two processes started at the same moment on an empty database; the same events sent to both; the
    messages of one thread split between them 0-285 ms apart; 50 Claim and 20 Loop-in clicks on one card
    spread over both."""
    server, api_url = fake
    database = await pg.fresh_database(postgres_server)
    ports = [free_port(), free_port()]
    bots = await start_bots([bot_env(api_url, p, database) for p in ports], tmp_path, into=processes)  # both up
    urls = [events_url(p) for p in ports]
    async with SlackSender(urls[0]) as sender:
        # The same events to both processes, and each message also as an app_mention (another event id).
        burst = Burst.of(sender, 30, first=1000)
        for body in burst.bodies:
            mention = {**body, "event_id": sender.event_id(), "event": {**body["event"], "type": "app_mention"}}
            sender.send(body, url=urls[0])
            sender.send(body, url=urls[1])
            sender.send(mention, url=urls[1])
        await sender.finished()
        assert not sender.given_up
        acknowledged = set(burst.kind)
        await wait_answered(server, burst, acknowledged, timeout=60)
        verdict = judge(server, burst, acknowledged)
        assert not verdict.problems(), verdict.problems()
        assert verdict.answered_once == len(burst.bodies)

        # One thread's messages split over both processes, 0 to 285 ms apart.
        base = int(time.time()) + 1
        expected: dict[str, tuple[str, str]] = {}
        timing: dict[str, dict[str, float]] = {}

        async def thread(n: int) -> None:
            first, second, shows = THREADS[n % len(THREADS)]
            ts, follow = f"{base}.{n * 10:06d}", f"{base}.{n * 10 + 1:06d}"
            expected[ts] = shows
            user = f"U0C{2000 + n:05d}"
            bodies = [sender.customer_message(user, first, ts=ts),
                      sender.customer_message(user, second, ts=follow, thread_ts=ts)]
            sent = time.monotonic()
            one = sender.send(bodies[0], url=urls[n % 2])
            await asyncio.sleep(n * 0.015)  # the scenario's gap between the two messages, not a wait
            two = sender.send(bodies[1], url=urls[1 - n % 2])
            assert await one and await two
            timing[ts] = {"gap_ms": n * 15, **{f"ack{i + 1}_ms": round(1000 * (
                sender.acknowledged[b["event_id"]] - sent)) for i, b in enumerate(bodies)}}

        await asyncio.gather(*(thread(n) for n in range(20)))
        await server.wait_for(lambda f: all(len(replies_per_thread(f).get(t, [])) >= 2 for t in expected),
                              timeout=60)
        await nothing_pending(database, timeout=30)
        replies = replies_per_thread(server)
        out_of_order = {t: [r["text"][:60] for r in replies[t]] for t, shows in expected.items()
                        if len(replies[t]) != 2 or not all(s in r["text"] for s, r in zip(shows, replies[t],
                                                                                             strict=True))}
        report("two-processes/threads", threads=len(expected), wrong=len(out_of_order),
               acked_second_first=sum(t["ack2_ms"] < t["ack1_ms"] for t in timing.values()))
        assert not out_of_order, {t: (timing[t], replies) for t, replies in out_of_order.items()}

        # 50 simultaneous Claim clicks on one card, through both processes.
        disputed = next(t for t, kind in burst.kind.items() if kind == "escalation")
        [card] = [m for m in server.messages_in(INTERNAL)
                  if f"archives/{SHARED}/p{disputed.replace('.', '')}" in json.dumps(m.get("blocks"))]
        buttons = card_buttons(card)
        conversation_id = buttons[blocks.CLAIM]
        clickers = [f"U0S{n:04d}" for n in range(50)]
        updates_before = len(server.ok("chat.update"))
        statuses = await asyncio.gather(*(
            sender.interact(staff_click(u, blocks.CLAIM, conversation_id, card["ts"], n), url=urls[n % 2])
            for n, u in enumerate(clickers)))
        assert statuses == [200] * 50
        await server.wait_for(lambda f: len(f.ok("chat.postEphemeral")) >= 49 and any(
            "Claimed by" in json.dumps(c.args.get("blocks")) for c in f.ok("chat.update")[updates_before:]),
            timeout=30)
        await nothing_pending(database, timeout=30)
        owner = await claimed_by(database, conversation_id)
        assert owner in clickers
        ephemerals = server.ok("chat.postEphemeral")
        assert sorted(c.args["user"] for c in ephemerals) == sorted(set(clickers) - {owner})
        assert {c.args["text"] for c in ephemerals} == {f"Already claimed by <@{owner}>."}
        shown = [json.dumps(c.args.get("blocks")) for c in server.ok("chat.update")[updates_before:]]
        claimed_shown = {m for s in shown for m in re.findall(r"Claimed by <@(U0S\d{4})>", s)}
        assert claimed_shown == {owner}, claimed_shown
        final = next(m for m in server.messages_in(INTERNAL) if m["ts"] == card["ts"])
        assert re.findall(r"Claimed by <@(U0S\d{4})>", json.dumps(final["blocks"])) == [owner]
        report("two-processes/claim", clicks=50, owner=owner, ephemerals=len(ephemerals),
               card_updates=len(shown))

        # 20 simultaneous "Loop in" clicks for one team, through both processes.
        loop_in = next(a for a in buttons if a.startswith(blocks.LOOP_IN + ":"))
        route = loop_in.split(":", 1)[1]
        ephemerals_before = len(server.ok("chat.postEphemeral"))
        statuses = await asyncio.gather(*(
            sender.interact(staff_click(f"U0L{n:04d}", loop_in, conversation_id, card["ts"], 100 + n),
                            url=urls[n % 2]) for n in range(20)))
        assert statuses == [200] * 20
        await server.wait_for(lambda f: len(f.ok("chat.postEphemeral")) - ephemerals_before >= 19, timeout=30)
        await nothing_pending(database, timeout=30)
        rows = await loop_ins(database, conversation_id)
        notes = [m for m in server.messages_in(INTERNAL, card["ts"]) if "looped in" in m.get("text", "")]
        report("two-processes/loop-in", clicks=20, rows=len(rows), notes=len(notes))
        assert len(rows) == 1 and rows[0][0] == route, rows
        assert len(notes) == 1
    report("two-processes/logs", tracebacks=[b.count_logs("Traceback") for b in bots],
           errors=[b.count_logs('"level": "error"') for b in bots])


async def claimed_by(url: str, conversation_id: str) -> str | None:
    store = Store(url)
    try:
        conversation = await store.get_conversation(conversation_id)
        return conversation.claimed_by if conversation is not None else None
    finally:
        await store.close()


async def loop_ins(url: str, conversation_id: str) -> list[tuple[str, str]]:
    store = Store(url)
    try:
        async with store.engine.connect() as conn:
            rows = (await conn.execute(sa.text("SELECT route, actor FROM loop_ins WHERE conversation_id = :c"),
                                       {"c": conversation_id})).all()
        return [(str(r), str(a)) for r, a in rows]
    finally:
        await store.close()


# ---- 3. PostgreSQL stopped for 10 s in the middle of a burst ----


@pytest.mark.postgres
async def test_a_database_outage_answers_503_fast_and_loses_nothing(fake: tuple[FakeSlack, str], tmp_path: Path,
                                                                    processes: list[Bot]) -> None:
    """240 messages at 24/s; PostgreSQL (a cluster of this test's own) stopped for 10 s once 50 of them are
    acknowledged. During the outage events are answered 5xx at once (Slack retries them), readiness is
    503 and liveness 200; afterwards readiness is 200 again by itself, and everything acknowledged is
    answered exactly once."""
    server, api_url = fake
    try:
        cluster = pg.start_cluster()
    except pg.PostgresUnavailable as exc:
        if os.environ.get("BATON_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"BATON_REQUIRE_POSTGRES=1 but {exc}")
        pytest.skip(str(exc))
    try:
        database = await pg.fresh_database(cluster.url)
        port = free_port()
        bot = Bot(bot_env(api_url, port, database), tmp_path)
        processes.append(bot)
        await bot.start()
        health: list[tuple[float, int, int]] = []  # (seconds since the outage began, /healthz, /livez)
        async with SlackSender(events_url(port)) as sender, ClientSession() as http:

            async def probe(path: str) -> int:
                try:
                    async with http.get(f"http://127.0.0.1:{port}{path}", timeout=ClientTimeout(total=5)) as answer:
                        return answer.status
                except (TimeoutError, OSError):
                    return 0

            burst = Burst.of(sender, 240, first=3000)
            sending = asyncio.create_task(sender.burst(burst.bodies, rate=24))
            await sender.wait_acknowledged(50, timeout=60)
            sender.up.clear()
            await asyncio.to_thread(cluster.stop)
            down = time.monotonic()
            while (since := time.monotonic() - down) < 10.0:  # the outage: 10 s, probed all along
                healthz, livez = await asyncio.gather(probe("/healthz"), probe("/livez"))
                health.append((since, healthz, livez))
                await asyncio.sleep(0.25)  # the probe's period
            await asyncio.to_thread(cluster.start)
            up = time.monotonic()
            sender.up.set()
            recovered: float | None = None
            while recovered is None and time.monotonic() - up < 30:
                if await probe("/healthz") == 200:
                    recovered = time.monotonic() - up
                else:
                    await asyncio.sleep(0.1)  # poll readiness with a deadline: the process gives no other signal
            await sending
            await sender.finished()
            acknowledged = burst.acknowledged(sender)
            await wait_answered(server, burst, acknowledged)
            counts = await nothing_pending(database)
            verdict = judge(server, burst, acknowledged)
            during = [a for a in sender.attempts if down <= a.at and a.at + a.seconds <= up]
            outcomes = Counter(a.reason or str(a.status) for a in during)
            slow = sorted(a.seconds for a in during)
            timeouts = [a for a in sender.attempts if a.reason == "http_timeout"]
            report("outage", acknowledged=len(acknowledged), given_up=len(sender.given_up),
                   during_outage=dict(outcomes), p50_5xx_ms=round(1000 * slow[len(slow) // 2]) if slow else None,
                   max_5xx_ms=round(1000 * slow[-1]) if slow else None, timeouts=len(timeouts),
                   healthz_during={s: n for s, n in Counter(h for _, h, _ in health).items()},
                   livez_during={s: n for s, n in Counter(li for _, _, li in health).items()},
                   ready_again_s=round(recovered, 2) if recovered is not None else None,
                   answered_once=verdict.answered_once, cards_once=verdict.cards_once, database=counts,
                   problems=verdict.problems())
        assert during, "no event reached the process during the outage"
        assert all(a.status is not None and a.status >= 500 for a in during), outcomes  # 5xx, so Slack retries
        assert slow[-1] < 1.0, f"a 5xx took {slow[-1]:.2f} s"
        assert not timeouts, f"{len(timeouts)} events were not answered within {ACK_WITHIN} s"
        assert all(li == 200 for _, _, li in health), health
        assert all(h == 503 for s, h, _ in health if s >= 1.0), health  # readiness fails (within a second)
        assert recovered is not None, "/healthz did not answer 200 within 30 s of the database's return"
        assert len(acknowledged) == len(burst.bodies), f"Slack gave up on {len(sender.given_up)} events"
        assert not verdict.problems(), verdict.problems()
        assert verdict.answered_once == len(acknowledged)
        assert not counts["inbox"].get("failed") and not counts["outbox"].get("failed"), counts
    finally:
        for started in processes:
            await started.kill()
        cluster.remove()


# ---- 4. the Web API loses the answer to posts that succeeded ----


async def test_posts_whose_answer_was_lost_are_not_posted_again(fake: tuple[FakeSlack, str], tmp_path: Path,
                                                                processes: list[Bot]) -> None:
    """120 messages at 40/s while one chat.postMessage in three takes effect in Slack but its answer is
    lost (alternately a 500, a 503 and a connection closed without an answer): no answer and no card
    twice, no outbox row's message twice."""
    server, api_url = fake
    port = free_port()
    bot = Bot(bot_env(api_url, port, f"sqlite:///{tmp_path / 'baton.db'}"), tmp_path)
    processes.append(bot)
    await bot.start()
    faults: list[int | None] = [500, 503, None]
    injected = 0
    async with SlackSender(events_url(port)) as sender:
        burst = Burst.of(sender, 120, first=4000)
        sending = asyncio.create_task(sender.burst(burst.bodies, rate=40))

        async def inject() -> None:
            nonlocal injected
            while True:  # every third post from now on loses its answer
                mark = server.count("chat.postMessage")
                server.fail_after("chat.postMessage", faults[injected % len(faults)])
                injected += 1
                await server.wait_for(lambda f, m=mark: f.count("chat.postMessage") >= m + 3, timeout=120)

        injecting = asyncio.create_task(inject())
        await sending
        await sender.finished()
        acknowledged = burst.acknowledged(sender)
        await wait_answered(server, burst, acknowledged)
        injecting.cancel()
        lost = [c for c in server.calls if c.method == "chat.postMessage" and c.applied and c.status != 200]
        counts = await nothing_pending(f"sqlite+aiosqlite:///{tmp_path / 'baton.db'}")
        verdict = judge(server, burst, acknowledged)
        report("lost-answers", acknowledged=len(acknowledged), posts=server.count("chat.postMessage"),
               answers_lost=len(lost), looked_up=len(server.ok("conversations.replies"))
               + len(server.ok("conversations.history")), answered_once=verdict.answered_once,
               cards_once=verdict.cards_once, database=counts, problems=verdict.problems())
    assert len(lost) >= 30, f"only {len(lost)} answers were lost: the fault mode did not bite"
    assert len(acknowledged) == len(burst.bodies)
    assert not verdict.problems(), verdict.problems()
    assert verdict.answered_once == len(acknowledged)
    assert verdict.cards_once == sum(k == "escalation" for k in burst.kind.values())
    assert not counts["outbox"].get("failed"), counts
