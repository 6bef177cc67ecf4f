"""The runtime in one process: the durable inbox, its workers, one transaction per turn, delivered once.

The real application with the real Slack platform over HTTP against the Web API fake, on SQLite and on
PostgreSQL. The claims about crashes and several processes are in tests/test_runtime.py, with real
processes; here are the mechanisms one by one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
import structlog
from aiohttp import ClientSession
from slack_fake import CUSTOMER_TEAM, INTERNAL, SHARED, FakeSlack, Harness

from bot.engine import Engine
from bot.model import Message, Person, Role
from bot.service import Service
from bot.store import Store, inbox, outbox

HOW_TO = "How do I connect my Outlook calendar?"
DISPUTE = "You charged us twice for November and I want a refund now."


@pytest.fixture
async def slack(fake: tuple[FakeSlack, str], store: Store, bot: Engine) -> AsyncIterator[Harness]:
    harness = Harness(Service(bot, store), fake[0], fake[1])
    await harness.start()
    yield harness
    await harness.close()


def top_level(posts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in posts if not p.get("thread_ts")]


async def test_an_event_is_stored_before_it_is_acknowledged_and_its_row_closed_by_the_turn(slack: Harness):
    statements: list[str] = []
    sa.event.listen(slack.service.store.engine.sync_engine, "before_cursor_execute",
                    lambda _c, _cur, statement, *_a: statements.append(statement))
    status, _ = await slack.send_event(slack.message_event("U0DANA", HOW_TO), wait=False)
    assert status == 200
    assert any(s.startswith("INSERT INTO inbox") for s in statements)  # written before the 200
    await slack.settle()
    async with slack.service.store.engine.connect() as conn:
        rows = (await conn.execute(sa.select(inbox.c.status, inbox.c.payload, inbox.c.attempts))).all()
    assert [(r.status, r.payload, r.attempts) for r in rows] == [("done", None, 0)]
    assert len(slack.fake.posts(SHARED)) == 1


async def test_a_how_to_costs_three_transactions_in_all(slack: Harness):
    await slack.say("U0DANA", HOW_TO)  # the first one warms the caches (users.info, the model)
    await slack.settle()
    begun = 0

    def count(_conn: object) -> None:
        nonlocal begun
        begun += 1

    sa.event.listen(slack.service.store.engine.sync_engine, "begin", count)
    event = slack.message_event("U0ALEX", "How do I export a transcript?")
    status, _ = await slack.send_event(event)
    assert status == 200
    await slack.fake.wait_for(lambda f: len(f.posts(SHARED)) == 2)
    assert begun == 3  # the inbox row; the turn with its outbox rows; the delivery's mark


async def test_rows_left_pending_by_a_process_that_died_are_worked_on_at_the_next_start(
        fake: tuple[FakeSlack, str], store: Store, bot: Engine):
    server, url = fake
    stored = Harness(Service(bot, store), server, url)
    # What a process that stored two events and died before working on them leaves behind.
    for n, text in enumerate([HOW_TO, DISPUTE]):
        ts = f"1800000000.00010{n}"
        event = stored.message_event("U0DANA", text, ts=ts, user_team=CUSTOMER_TEAM)
        assert await store.receive("slack", f"{SHARED}:{ts}", kind="event",
                                   payload={"event_id": f"Ev{n}", "event": event},
                                   thread=f"slack:T0VENDOR:{SHARED}:{ts}") is not None
    again = Harness(Service(bot, store), server, url)
    await again.start()
    try:
        await again.tracker.wait("Ev0")
        await again.tracker.wait("Ev1")
        await again.settle()
    finally:
        await again.close()
    assert sorted(p["thread_ts"] for p in server.posts(SHARED)) == ["1800000000.000100", "1800000000.000101"]
    assert len(top_level(server.posts(INTERNAL))) == 1  # the dispute's card


async def test_a_failing_turn_leaves_its_row_pending_and_logged_and_in_the_end_failed(
        slack: Harness, monkeypatch: pytest.MonkeyPatch):
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("the engine broke")

    monkeypatch.setattr(slack.service.engine, "decide", broken)
    with structlog.testing.capture_logs() as logs:
        await slack.say("U0DANA", HOW_TO)
    failed = [e for e in logs if e["event"] == "inbound_failed"]
    assert failed and failed[0]["log_level"] == "error" and "the engine broke" in failed[0]["error"]
    async with slack.service.store.engine.connect() as conn:
        row = (await conn.execute(sa.select(inbox))).mappings().one()
    assert row["status"] == "pending" and row["attempts"] == 1 and row["payload"]["event"]["text"] == HOW_TO
    for _ in range(4):  # retried (by the poll, or the next start) until it gives up: kept, with its payload
        await slack.service.store.inbound_failed(row["id"], "again")
    async with slack.service.store.engine.connect() as conn:
        row = (await conn.execute(sa.select(inbox))).mappings().one()
    assert row["status"] == "failed" and row["payload"] is not None


async def test_two_quick_messages_of_one_thread_are_worked_on_in_order(slack: Harness):
    first = slack.message_event("U0DANA", HOW_TO)
    second = slack.message_event("U0DANA", "And how do I export a transcript?", thread_ts=first["ts"])
    _, one = await slack.send_event(first, wait=False)  # the second arrives while the first is worked on
    _, two = await slack.send_event(second, wait=False)
    await slack.tracker.wait(one)
    await slack.tracker.wait(two)
    await slack.settle()
    texts = [p["text"] for p in slack.fake.posts(SHARED)]
    assert len(texts) == 2 and "calendar" in texts[0].lower() and "export" in texts[1].lower()


async def test_a_thread_is_worked_on_in_the_platforms_order_whatever_order_its_events_were_stored_in(store: Store):
    async def receive(event: str, seq: str) -> int:
        stored = await store.receive("slack", event, kind="event", payload={}, thread="slack:T:C:1", seq=seq)
        assert stored is not None
        return stored

    later = await receive("C:1800000000.000200", "1800000000.000200")  # stored first, written second
    earlier = await receive("C:1800000000.000100", "1800000000.000100")
    async with store.transaction():
        assert await store.take_inbound(later) is None  # waits for the message written before it
    async with store.transaction():
        taken = await store.take_inbound(earlier)
        assert taken is not None and taken.following == later  # whoever finishes it starts the next
        await store.finish_inbound(earlier)
    async with store.transaction():
        taken = await store.take_inbound(later)
        assert taken is not None and taken.following is None
    assert [i.id for i in await store.pending_inbound()] == [later]


@pytest.mark.parametrize("lost", [500, None], ids=["500 after the post", "connection dropped after the post"])
async def test_a_reply_whose_answer_was_lost_is_found_not_posted_again(slack: Harness, lost: int | None):
    slack.fake.fail_after("chat.postMessage", lost)
    ts = await slack.say("U0DANA", HOW_TO)
    await slack.settle()
    assert [p["thread_ts"] for p in slack.fake.posts(SHARED)] == [ts]  # once
    assert slack.fake.count("conversations.replies") >= 1  # it looked before posting again
    [row] = await _outbox(slack)
    assert row["status"] == "sent" and row["result"]["ts"] == slack.fake.posts(SHARED)[0]["posted_ts"]


async def test_a_card_whose_answer_was_lost_is_found_in_the_channel_and_its_notes_follow_it(slack: Harness):
    slack.fake.fail_after("chat.postMessage", 500)  # the first post of the turn is the card
    await slack.say("U0ALEX", DISPUTE)
    await slack.settle()
    cards = top_level(slack.fake.posts(INTERNAL))
    assert len(cards) == 1
    notes = [p for p in slack.fake.posts(INTERNAL) if p.get("thread_ts")]
    assert notes and {p["thread_ts"] for p in notes} == {cards[0]["posted_ts"]}
    conversation = await slack.service.store.find_conversation("slack", "T0VENDOR", SHARED,
                                                               slack.fake.posts(SHARED)[0]["thread_ts"])
    assert conversation is not None
    handoff = await slack.service.store.handoff(conversation.id)
    assert handoff is not None and handoff.card_ts == cards[0]["posted_ts"] and handoff.sla_due is not None


async def test_a_rate_limited_post_is_retried_without_looking_first_and_a_5xx_after_a_look(slack: Harness):
    slack.fake.fail("chat.postMessage", 429, retry_after=0)  # Slack did nothing: no need to look
    await slack.say("U0DANA", HOW_TO)
    await slack.settle()
    assert len(slack.fake.posts(SHARED)) == 1 and slack.fake.count("conversations.replies") == 0
    slack.fake.fail("chat.postMessage", 503)  # a 5xx may come after the post: look first
    await slack.say("U0ALEX", "How do I export a transcript?")
    await slack.settle()
    assert len(slack.fake.posts(SHARED)) == 2 and slack.fake.count("conversations.replies") == 1


async def test_readiness_touches_the_database_and_liveness_does_not(slack: Harness, monkeypatch: pytest.MonkeyPatch):
    base = slack.url.replace("/slack/events", "")
    async with ClientSession() as http:
        async with http.get(f"{base}/healthz") as r:
            assert r.status == 200 and (await r.json()) == {"ok": True}

        async def down() -> None:
            raise ConnectionRefusedError("the database is down")

        monkeypatch.setattr(slack.service.store, "ping", down)
        async with http.get(f"{base}/healthz") as r:
            assert r.status == 503 and "database: ConnectionRefusedError" in (await r.json())["problems"]
        async with http.get(f"{base}/livez") as r:
            assert r.status == 200


async def test_an_event_the_database_cannot_take_gets_a_503_and_is_stored_when_slack_retries(
        slack: Harness, monkeypatch: pytest.MonkeyPatch):
    store = slack.service.store
    real = store.receive

    async def down(*_args: Any, **_kwargs: Any) -> int | None:
        raise ConnectionRefusedError("the database is down")

    monkeypatch.setattr(store, "receive", down)
    event = slack.message_event("U0DANA", HOW_TO)
    with structlog.testing.capture_logs() as logs:
        status, event_id = await slack.send_event(event, wait=False)
    assert status == 503
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["inbox_unavailable"]
    monkeypatch.setattr(store, "receive", real)
    status, _ = await slack.send_event(event, event_id=event_id, headers={"X-Slack-Retry-Num": "1",
                                                                          "X-Slack-Retry-Reason": "http_error"})
    assert status == 200
    await slack.settle()
    assert len(slack.fake.posts(SHARED)) == 1


async def test_loop_ins_are_unique_in_the_schema(store: Store, bot: Engine):
    service = Service(bot, store)
    outcome = await service.handle(Message(
        platform="slack", workspace="T0VENDOR", channel=SHARED, thread="1800000000.000100",
        author=Person(id="U0ALEX", role=Role.customer), text=DISPUTE, at=datetime.now(UTC), event_id="Ev1"))
    assert outcome.conversation is not None
    results = await asyncio.gather(*(store.loop_in(outcome.conversation.id, "engineering", f"U{n}") for n in range(20)))
    assert sorted(results) == [False] * 19 + [True]


async def _outbox(slack: Harness) -> list[dict[str, Any]]:
    async with slack.service.store.engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(sa.select(outbox).order_by(outbox.c.id))).mappings().all()]

