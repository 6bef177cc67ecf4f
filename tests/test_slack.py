"""Slack end to end: the real Bolt app over real HTTP on 127.0.0.1, signed Slack Connect payloads, the
real AsyncWebClient against a local fake of the Web API, and a real store (SQLite and PostgreSQL).

Each scenario asserts what was posted where.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import structlog
from aiohttp import ClientSession
from bot_process import free_port, running_bot
from slack_fake import GROUPS, INTERNAL, SECRET, SHARED, TOKEN, FakeSlack, Harness, envelope, message_event
from slack_sdk.signature import SignatureVerifier

from adapters import slack_blocks as blocks
from adapters.slack import SlackConfig, SlackConfigError
from bot.engine import Engine
from bot.model import ConversationState
from bot.service import Service
from bot.settings import Settings
from bot.store import Store

LA = ZoneInfo("America/Los_Angeles")
START = datetime(2026, 11, 20, 10, 0, tzinfo=LA)  # a Friday, in business hours
DISPUTE = "This is ridiculous. You charged us twice for November and I want a refund NOW."


def text_of(value: object) -> str:
    """Blocks or a message as one string, as a person would search them."""
    return json.dumps(value, ensure_ascii=False)


def top_level(posts: list[dict]) -> list[dict]:
    return [p for p in posts if not p.get("thread_ts")]


def in_thread(posts: list[dict], ts: str) -> list[dict]:
    return [p for p in posts if p.get("thread_ts") == ts]


async def open_dispute(slack: Harness) -> tuple[str, str, str]:
    """A billing dispute handed over; returns (customer thread ts, conversation id, card ts)."""
    ts = await slack.say("U0ALEX", DISPUTE)
    await slack.settle()
    [card] = top_level(slack.fake.posts(INTERNAL))
    conversation = await slack.service.store.find_conversation("slack", "T0VENDOR", SHARED, ts)
    assert conversation is not None
    return ts, conversation.id, card["posted_ts"]


async def test_a_how_to_is_answered_in_the_customers_thread_with_a_citation(slack: Harness):
    ts = await slack.say("U0DANA", "How do I connect my Outlook calendar?")
    await slack.settle()
    [reply] = slack.fake.posts(SHARED)
    assert reply["thread_ts"] == ts
    assert "https://help.notewise.example/articles/connect-calendars" in reply["text"]
    assert slack.fake.posts(INTERNAL) == []  # nothing to hand over


async def test_a_meeting_report_gathers_name_date_and_time_then_hands_over_with_them(slack: Harness):
    ts = await slack.say("U0DANA", "Hi, the notetaker never joined our call and there's no recording", at=START)
    await slack.say("U0DANA", "It was at 3:30pm PST", at=START + timedelta(minutes=1), thread_ts=ts)
    await slack.say("U0DANA", "Weekly Sync, yesterday", at=START + timedelta(minutes=2), thread_ts=ts)
    await slack.settle()
    asked = [p["text"] for p in in_thread(slack.fake.posts(SHARED), ts)]
    assert len(asked) == 3 and asked[-1] == "Weekly Sync, Thu 19 Nov 2026, 15:30 PST: is that right?"
    assert slack.fake.posts(INTERNAL) == []  # not routed before the details are confirmed
    await slack.say("U0DANA", "yes", at=START + timedelta(minutes=3), thread_ts=ts)
    await slack.settle()
    assert "won't need to repeat yourself" in in_thread(slack.fake.posts(SHARED), ts)[-1]["text"]
    [card] = top_level(slack.fake.posts(INTERNAL))
    shown = text_of(card["blocks"])
    for value in ("Weekly Sync", "2026-11-19", "15:30", "America/Los_Angeles", "<!subteam^S0SUPPORT>"):
        assert value in shown or value in card["text"], value
    # the transcript so far follows the card in its thread: 4 customer messages and 4 bot replies
    conversation = await slack.service.store.find_conversation("slack", "T0VENDOR", SHARED, ts)
    handoff = await slack.service.store.handoff(conversation.id)  # type: ignore[union-attr]
    assert handoff is not None and handoff.card_channel == INTERNAL
    transcript = in_thread(slack.fake.posts(INTERNAL), handoff.card_ts)  # type: ignore[arg-type]
    assert len(transcript) == 8 and "Weekly Sync, yesterday" in transcript[4]["text"]


async def test_a_billing_dispute_is_escalated_at_once_with_the_brief_on_the_card(slack: Harness):
    ts = await slack.say("U0ALEX", DISPUTE)
    await slack.settle()
    [notice] = slack.fake.posts(SHARED)
    assert notice["thread_ts"] == ts and "person from our team" in notice["text"]
    [card] = top_level(slack.fake.posts(INTERNAL))
    assert card["channel"] == INTERNAL and "<!subteam^S0BILLING>" in card["text"]
    shown = text_of(card["blocks"])
    assert "*CRITICAL* handoff for <!subteam^S0BILLING>" in shown
    assert "Alex Acme (T0ACME0001)" in shown and "contract: Acme" in shown  # customer, organisation, contract
    assert f"archives/{SHARED}/p{ts.replace('.', '')}" in shown  # permalink to the customer's thread
    assert "billing (confidence" in shown  # intent and confidence
    assert "billing dispute" in shown  # why now, in words
    assert "\u201ccharged us twice\u201d" in shown  # their verbatim urgent words
    assert "person from our team" in shown  # what the bot already said
    assert "Look up the charges" in shown  # the suggested next step
    actions = next(b for b in card["blocks"] if b["type"] == "actions")["elements"]
    assert [a["text"]["text"] for a in actions] == ["Claim", "Loop in engineering", "Loop in CTO",
                                                    "Escalate to leadership", "Send to customer", "Not needed",
                                                    "Resolve"]
    conversation = await slack.service.store.find_conversation("slack", "T0VENDOR", SHARED, ts)
    handoff = await slack.service.store.handoff(conversation.id)  # type: ignore[union-attr]
    assert handoff is not None and handoff.sla_due is not None  # the SLA timer runs from the card
    transcript = in_thread(slack.fake.posts(INTERNAL), handoff.card_ts)  # type: ignore[arg-type]
    assert [t["text"].split(":")[0] for t in transcript] == ["Alex Acme (customer)", "Baton (bot)"]


async def test_two_staff_clicking_claim_at_once_make_exactly_one_owner(slack: Harness):
    _ts, conversation_id, card_ts = await open_dispute(slack)
    statuses = await asyncio.gather(slack.click("U0SAM", blocks.CLAIM, conversation_id, card_ts),
                                    slack.click("U0KIM", blocks.CLAIM, conversation_id, card_ts))
    assert statuses == [200, 200]
    await slack.settle()
    conversation = await slack.service.store.get_conversation(conversation_id)
    assert conversation is not None and conversation.state is ConversationState.claimed
    owner = conversation.claimed_by
    loser = "U0KIM" if owner == "U0SAM" else "U0SAM"
    [update] = slack.fake.ok("chat.update")
    assert update.args["ts"] == card_ts and f"Claimed by <@{owner}>" in text_of(update.args["blocks"])
    assert '"Claim"' not in text_of(update.args["blocks"])  # the button is gone
    [ephemeral] = slack.fake.ok("chat.postEphemeral")
    assert ephemeral.args["user"] == loser and ephemeral.args["text"] == f"Already claimed by <@{owner}>."
    claims = [t for t in await slack.service.store.transitions_of(conversation_id) if t["cause"] == "claimed"]
    assert len(claims) == 1 and claims[0]["actor"] == owner


async def test_a_staff_reply_in_the_customers_thread_silences_the_bot(slack: Harness):
    ts = await slack.say("U0DANA", "How do I connect my Outlook calendar?")
    await slack.settle()
    assert len(slack.fake.posts(SHARED)) == 1
    await slack.say("U0SAM", "Hi Dana, I'll take this one from here.", thread_ts=ts)
    await slack.say("U0DANA", "Thanks! And how do I export a transcript?", thread_ts=ts)
    await slack.settle()
    assert len(slack.fake.posts(SHARED)) == 1  # the bot said nothing more
    conversation = await slack.service.store.find_conversation("slack", "T0VENDOR", SHARED, ts)
    assert conversation is not None and conversation.claimed_by == "U0SAM"
    assert conversation.state is ConversationState.claimed


async def test_send_to_customer_posts_in_the_customers_thread_and_internal_talk_stays_internal(slack: Harness):
    ts, conversation_id, card_ts = await open_dispute(slack)
    await slack.say("U0SAM", "finance says refund approved, S0 ticket #4411", channel=INTERNAL, thread_ts=card_ts)
    assert await slack.click("U0SAM", blocks.SEND, conversation_id, card_ts) == 200
    [opened] = slack.fake.ok("views.open")
    view = opened.args["view"]
    assert view["callback_id"] == blocks.SEND_VIEW and view["private_metadata"] == conversation_id
    assert view["blocks"][0]["type"] == "input"  # the modal's first input is the message
    assert await slack.submit("U0SAM", view, "Hi Alex, I've refunded the duplicate November charge.") == 200
    await slack.settle()
    sent = in_thread(slack.fake.posts(SHARED), ts)[-1]
    assert sent["text"] == "Hi Alex, I've refunded the duplicate November charge."
    assert sent["username"] == "Sam Agent (support)"
    conversation = await slack.service.store.get_conversation(conversation_id)
    assert conversation is not None and conversation.claimed_by == "U0SAM"  # sending claims it
    notes = [p["text"] for p in in_thread(slack.fake.posts(INTERNAL), card_ts)]
    assert any("sent to the customer" in n for n in notes)
    # No internal-thread message, card or note ever reaches a customer channel.
    customer_side = " ".join(text_of(p) for p in slack.fake.posts(SHARED))
    assert "refund approved" not in customer_side and "subteam" not in customer_side
    assert all(p["channel"] == SHARED for p in slack.fake.posts() if p.get("thread_ts") == ts)


async def test_the_guard_stops_a_staff_message_in_the_modal(slack: Harness):
    ts, conversation_id, card_ts = await open_dispute(slack)
    await slack.click("U0SAM", blocks.SEND, conversation_id, card_ts)
    view = slack.fake.ok("views.open")[0].args["view"]
    before = len(slack.fake.posts(SHARED))
    assert await slack.submit("U0SAM", view, "Hi {{first_name}}, we escalated this to <!subteam^S0BILLING>") == 200
    answer = json.loads(slack.last_response)  # the modal stays open and shows why
    assert answer["response_action"] == "errors"
    assert "placeholder" in answer["errors"]["message"] and "internal" in answer["errors"]["message"]
    await slack.settle()
    assert len(slack.fake.posts(SHARED)) == before


async def test_a_retried_event_and_a_message_with_its_app_mention_are_answered_once(slack: Harness):
    event = slack.message_event("U0DANA", "How do I connect my Outlook calendar?")
    _, event_id = await slack.send_event(event)
    status, _ = await slack.send_event(event, event_id=event_id, wait=False,
                                       headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    assert status == 200
    mention = slack.message_event("U0DANA", "<@U0BATON> how do I export a transcript?")
    await slack.send_event(mention)
    await slack.send_event({**mention, "type": "app_mention"})
    await slack.tracker.wait_count(4)
    await slack.settle()
    replies = slack.fake.posts(SHARED)
    assert sorted(p["thread_ts"] for p in replies) == sorted([event["ts"], mention["ts"]])


async def test_a_429_is_retried_after_its_retry_after_and_delivered_once(slack: Harness):
    slack.fake.fail("chat.postMessage", 429, retry_after=1)
    ts = await slack.say("U0DANA", "How do I connect my Outlook calendar?")
    await slack.settle()
    calls = [c for c in slack.fake.calls if c.method == "chat.postMessage"]
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 1.0  # waited as told
    assert [p["thread_ts"] for p in slack.fake.posts(SHARED)] == [ts]


async def test_a_handoff_hit_by_500s_is_delivered_exactly_once_after_a_restart(
        fake: tuple[FakeSlack, str], store: Store, bot: Engine):
    server, url = fake
    first = Harness(Service(bot, store), server, url, attempts=2, park=timedelta(minutes=10))
    await first.start()
    server.fail("chat.postMessage", 500, times=2)
    await first.say("U0ALEX", DISPUTE)
    await first.settle()
    assert [c.status for c in server.calls if c.method == "chat.postMessage"] == [500, 500]
    assert server.posts() == []
    await first.close()  # the process stops with the handoff undelivered

    second = Harness(Service(bot, store), server, url)
    await second.start()
    try:
        await second.courier.drain(now=datetime.now(UTC) + timedelta(minutes=11))
    finally:
        await second.close()
    assert len(top_level(server.posts(INTERNAL))) == 1  # the card, once
    assert len(server.posts(SHARED)) == 1  # the notice, once
    rows = await store.outbox_of((await store.find_conversation(
        "slack", "T0VENDOR", SHARED, server.posts(SHARED)[0]["thread_ts"])).id)  # type: ignore[union-attr]
    assert {r["status"] for r in rows} == {"sent"}


@pytest.mark.parametrize("case", ["bad", "stale", "missing"])
async def test_a_bad_stale_or_missing_signature_gets_401_and_nothing_is_stored(slack: Harness, case: str):
    event = slack.message_event("U0DANA", DISPUTE)
    body = json.dumps(slack.envelope(event))
    if case == "bad":
        status = await slack.post(body, "application/json", signature="v0=" + "0" * 64)
    elif case == "stale":
        status = await slack.post(body, "application/json", timestamp=int(time.time()) - 600)
    else:
        assert slack.http is not None
        async with slack.http.post(slack.url, data=body, headers={"Content-Type": "application/json"}) as r:
            status = r.status
    assert status == 401
    assert await slack.service.store.find_conversation("slack", "T0VENDOR", SHARED, event["ts"]) is None
    assert slack.tracker.handled == 0 and slack.fake.posts() == []


def _raw_signature(stamp: str, body: bytes) -> str:
    """Slack's v0 signature over raw bytes (slack-sdk's own helper cannot sign a body that is not UTF-8)."""
    return "v0=" + hmac.new(SECRET.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(("case", "status"), [
    ("unsigned and not UTF-8", 401),
    ("a timestamp that is not a number", 401),
    ("signed, not UTF-8", 400),
    ("signed, broken JSON", 400),
    ("signed, JSON nested 100,000 deep", 400),
    ("signed, a JSON array", 400),
    ("signed, a form whose payload is not JSON", 400),
    ("signed, 2 MB", 413),
])
async def test_garbled_requests_get_a_clear_status_and_one_log_line_never_a_500(
        slack: Harness, case: str, status: int):
    stamp = str(int(time.time()))
    content_type = "application/json"
    body = {
        "unsigned and not UTF-8": b"\xff\xfe{\"type\"",
        "a timestamp that is not a number": b"{}",
        "signed, not UTF-8": b"{\"type\": \"\xff\xfe\"}",
        "signed, broken JSON": b'{"type": "event_callback", "event": {',
        "signed, JSON nested 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
        "signed, a JSON array": b"[1, 2, 3]",
        "signed, a form whose payload is not JSON": b"payload=%7Bnot+json",
        "signed, 2 MB": b'{"type": "event_callback", "pad": "' + b"x" * 2_000_000 + b'"}',
    }[case]
    if "form" in case:
        content_type = "application/x-www-form-urlencoded"
    headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": stamp,
               "X-Slack-Signature": _raw_signature(stamp, body) if case.startswith("signed") else "v0=" + "0" * 64}
    if case == "a timestamp that is not a number":
        headers["X-Slack-Request-Timestamp"] = "soon"
    assert slack.http is not None
    with structlog.testing.capture_logs() as logs:
        async with slack.http.post(slack.url, data=body, headers=headers) as response:
            assert response.status == status
    refused = [e for e in logs if e["event"] == "slack_request_refused"]
    assert len(refused) == 1 and refused[0]["status"] == status
    assert not [e for e in logs if e.get("exc_info") or e["log_level"] in ("error", "critical")]
    assert slack.tracker.handled == 0 and slack.fake.posts() == []


async def test_bots_deletions_joins_and_unserved_channels_get_no_reply(slack: Harness):
    await slack.say("U0DANA", "How do I export a transcript?", bot_id="B0OTHER", subtype="bot_message")
    await slack.say("U0BATON", "How do I export a transcript?")  # our own message
    await slack.say("U0DANA", "", subtype="channel_join")
    await slack.say("U0DANA", "How do I export a transcript?", channel="C0ELSEWHERE")
    deleted = slack.message_event("U0DANA", "", subtype="message_deleted", deleted_ts="1.1")
    await slack.send_event(deleted)
    await slack.settle()
    assert slack.fake.posts() == []


async def test_an_edit_is_decided_again_only_when_it_raises_the_risk(slack: Harness):
    ts = await slack.say("U0DANA", "How do I connect my Outlook calendar?")
    await slack.settle()
    original = slack.message_event("U0DANA", "How do I connect my Outlook calendar?", ts=ts)

    def edit(text: str, stamp: str) -> dict:
        return {"type": "message", "subtype": "message_changed", "channel": SHARED, "hidden": True, "ts": stamp,
                "event_ts": stamp, "message": {**original, "text": text, "edited": {"user": "U0DANA", "ts": stamp}},
                "previous_message": original}

    await slack.send_event(edit("How do I connect my Outlook calendar, please?", "1800000100.000001"))
    await slack.settle()
    assert len(slack.fake.posts()) == 1 and slack.fake.posts(INTERNAL) == []  # no new risk: nothing new
    await slack.send_event(edit("How do I connect my calendar? You charged us twice and I want a refund!",
                                "1800000200.000001"))
    await slack.settle()
    assert len(top_level(slack.fake.posts(INTERNAL))) == 1  # now a billing dispute: handed over


async def test_loop_in_mentions_the_group_once_and_records_who_and_when(slack: Harness):
    _ts, conversation_id, card_ts = await open_dispute(slack)
    await slack.click("U0SAM", f"{blocks.LOOP_IN}:engineering", conversation_id, card_ts)
    await slack.click("U0KIM", f"{blocks.LOOP_IN}:engineering", conversation_id, card_ts)
    await slack.settle()
    notes = [p["text"] for p in in_thread(slack.fake.posts(INTERNAL), card_ts) if "looped in" in p["text"]]
    assert notes == [f"<!subteam^{GROUPS['engineering']}> <@U0SAM> looped in engineering"]
    handoff = await slack.service.store.handoff(conversation_id)
    assert handoff is not None and [(i.route, i.actor) for i in handoff.looped_in] == [("engineering", "U0SAM")]
    assert slack.fake.ok("chat.postEphemeral")[0].args["user"] == "U0KIM"
    assert "looped in: engineering by <@U0SAM>" in text_of(slack.fake.ok("chat.update")[-1].args["blocks"])


async def test_new_customer_messages_after_the_handoff_are_mirrored_not_answered(slack: Harness):
    ts, _conversation_id, card_ts = await open_dispute(slack)
    await slack.say("U0ALEX", "Hello?? Anyone there?", thread_ts=ts)
    await slack.settle()
    assert len(slack.fake.posts(SHARED)) == 2  # the handoff notice, and one acknowledgement while unclaimed
    assert "Hello?? Anyone there?" in in_thread(slack.fake.posts(INTERNAL), card_ts)[-1]["text"]
    await slack.say("U0ALEX", "Still nobody?", thread_ts=ts)
    await slack.settle()
    assert len(slack.fake.posts(SHARED)) == 2  # never a second acknowledgement
    assert "Still nobody?" in in_thread(slack.fake.posts(INTERNAL), card_ts)[-1]["text"]


async def test_resolve_closes_the_conversation_and_asks_one_csat_question(slack: Harness):
    ts, conversation_id, card_ts = await open_dispute(slack)
    await slack.click("U0SAM", blocks.RESOLVE, conversation_id, card_ts)
    await slack.settle()
    conversation = await slack.service.store.get_conversation(conversation_id)
    assert conversation is not None and conversation.state is ConversationState.resolved
    assert "Resolved by <@U0SAM>" in text_of(slack.fake.ok("chat.update")[-1].args["blocks"])
    question = in_thread(slack.fake.posts(SHARED), ts)[-1]["text"]
    assert "from 1 (poorly) to 5" in question
    await slack.say("U0ALEX", "5", thread_ts=ts)
    await slack.settle()
    handoff = await slack.service.store.handoff(conversation_id)
    assert handoff is not None and handoff.csat == 5 and handoff.conversation.state is ConversationState.resolved
    assert in_thread(slack.fake.posts(SHARED), ts)[-1]["text"] == "Thank you for the feedback!"
    assert "CSAT 5/5" in text_of(slack.fake.ok("chat.update")[-1].args["blocks"])  # shown on the card


async def test_an_unclaimed_handoff_past_its_sla_is_repinged_and_moves_up_once(slack: Harness, bot: Engine):
    _ts, conversation_id, card_ts = await open_dispute(slack)
    handoff = await slack.service.store.handoff(conversation_id)
    assert handoff is not None and handoff.sla_due is not None
    assert await slack.service.check_sla(now=handoff.sla_due - timedelta(seconds=1)) == 0
    # a restarted process finds the timer in the database
    restarted = Service(bot, slack.service.store)
    assert await restarted.store.next_sla() == handoff.sla_due
    later = handoff.sla_due + timedelta(seconds=1)
    assert sum(await asyncio.gather(restarted.check_sla(now=later), slack.service.check_sla(now=later))) == 1
    await slack.settle()
    [ping] = [p["text"] for p in in_thread(slack.fake.posts(INTERNAL), card_ts) if "SLA" in p["text"]]
    assert ping.startswith(f"<!subteam^{GROUPS['leadership']}>") and "moving up to leadership" in ping
    after = await slack.service.store.handoff(conversation_id)
    assert after is not None and after.sla_route == "leadership"
    assert after.sla_due is not None and after.sla_due > later  # leadership's own timer runs now
    # past that one too: a last re-ping, and the timer stops (leadership escalates to no one)
    assert await slack.service.check_sla(now=after.sla_due + timedelta(seconds=1)) == 1
    final = await slack.service.store.handoff(conversation_id)
    assert final is not None and final.sla_due is None


async def test_healthz_answers_once_events_can_be_handled(slack: Harness):
    async with ClientSession() as http:
        async with http.get(slack.url.replace("/slack/events", "/healthz")) as r:
            assert r.status == 200
    slack.adapter.ready = False
    async with ClientSession() as http:
        async with http.get(slack.url.replace("/slack/events", "/healthz")) as r:
            assert r.status == 503


def _settings(**env: str) -> Settings:
    base = {"SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": "s", "BATON_CUSTOMER_CHANNELS": SHARED,
            "BATON_INTERNAL_CHANNEL": INTERNAL}
    base.update(env)
    return Settings(**{k: v for k, v in base.items() if v}, _env_file=None)  # type: ignore[arg-type]


def test_the_configuration_is_validated_with_messages_that_say_what_to_fix(policy):
    config = SlackConfig.from_settings(_settings(), policy, environ={"BATON_ROUTE_BILLING": "S0REALBILL"})
    assert config.groups["billing"] == "S0REALBILL" and config.groups["support"] == "S0000SUPPORT"
    assert TOKEN not in repr(config)
    with pytest.raises(SlackConfigError) as error:
        SlackConfig.from_settings(_settings(SLACK_SIGNING_SECRET="", BATON_CUSTOMER_CHANNELS="general",
                                            BATON_INTERNAL_CHANNEL=""), policy, environ={})
    text = str(error.value)
    assert "SLACK_SIGNING_SECRET is not set" in text and "'general' is not a channel ID" in text
    assert "BATON_INTERNAL_CHANNEL is not set" in text and TOKEN not in text
    with pytest.raises(SlackConfigError, match="also a customer channel"):
        SlackConfig.from_settings(_settings(BATON_INTERNAL_CHANNEL=SHARED), policy, environ={})
    with pytest.raises(SlackConfigError, match="BATON_ROUTE_CTO"):
        SlackConfig.from_settings(_settings(), policy, environ={"BATON_ROUTE_CTO": "cto-team"})


async def test_an_internal_channel_shared_with_customers_is_refused_at_start(
        fake: tuple[FakeSlack, str], store: Store, bot: Engine):
    server, url = fake
    server.channels[INTERNAL]["is_ext_shared"] = True
    harness = Harness(Service(bot, store), server, url)
    with pytest.raises(SlackConfigError, match="shared with another organisation"):
        await harness.adapter.setup()
    server.channels[INTERNAL]["is_ext_shared"] = False
    harness.adapter.config = SlackConfig(**{**harness.adapter.config.__dict__, "internal_channel": "C0MISSING"})
    with pytest.raises(SlackConfigError, match="C0MISSING"):
        await harness.adapter.setup()
    await harness.adapter.stop()


async def test_python_m_bot_serves_slack_from_the_environment(fake: tuple[FakeSlack, str], tmp_path: Path):
    """The README's run command, as a process: configured by environment variables, it migrates a fresh
    database, checks the workspace, serves signed events on $PORT and answers through the Web API."""
    server, url = fake
    port = free_port()
    env = {**os.environ, "SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": url,
           "BATON_CUSTOMER_CHANNELS": SHARED, "BATON_INTERNAL_CHANNEL": INTERNAL, "PORT": str(port),
           "BATON_DATABASE_URL": f"sqlite:///{tmp_path / 'baton.db'}", "SLACK_APP_TOKEN": "", "DISCORD_TOKEN": ""}
    async with running_bot(env, tmp_path, ready="slack_http_listening") as bot:
        event = message_event("U0DANA", "How do I connect my Outlook calendar?", ts=f"{int(time.time())}.000100")
        body = json.dumps(envelope(event, event_id="Ev0PROCESS"))
        stamp = str(int(time.time()))
        signature = SignatureVerifier(SECRET).generate_signature(timestamp=stamp, body=body)
        async with ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as health:
                assert health.status == 200
            async with http.post(f"http://127.0.0.1:{port}/slack/events", data=body, headers={
                    "Content-Type": "application/json", "X-Slack-Request-Timestamp": stamp,
                    "X-Slack-Signature": signature}) as response:
                assert response.status == 200
        await server.wait_for(lambda f: bool(f.posts(SHARED)), timeout=30)
        assert "connect-calendars" in server.posts(SHARED)[0]["text"]
    assert bot.returncode == 0, bot.output
    assert TOKEN not in bot.output and SECRET not in bot.output  # secrets never reach the logs


SCOPES_FOR = {  # the bot scope each Web API method Baton calls needs (per Slack's method pages)
    "chat_postMessage": "chat:write", "chat_update": "chat:write", "chat_postEphemeral": "chat:write",
    "conversations_info": "channels:read", "users_info": "users:read", "chat_getPermalink": None,
    "views_open": None, "auth_test": None,
    "files_info": "files:read",
    "files_upload_v2": "files:write",  # the weekly digest's chart (bot/digest.py)
    "views_publish": None,  # App Home  # a Slack Connect file's name (it arrives as file_access: check_file_info)
    # Delivered once: a retry after an ambiguous failure looks for its post (message metadata) first.
    "conversations_replies": "channels:history", "conversations_history": "channels:history",
}


def test_the_app_manifest_grants_what_the_adapter_uses():
    root = Path(__file__).resolve().parent.parent
    manifest = json.loads((root / "slack-manifest.json").read_text())
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    used = set(re.findall(r"self\.client\.(\w+)\(", (root / "adapters" / "slack.py").read_text()))
    used |= set(re.findall(r"client\.(\w+)\(", (root / "bot" / "digest.py").read_text()))
    assert used <= set(SCOPES_FOR), f"add the scope of {used - set(SCOPES_FOR)} to SCOPES_FOR and the manifest"
    assert {SCOPES_FOR[m] for m in used if SCOPES_FOR[m]} <= scopes
    assert "chat:write.customize" in scopes  # staff replies show the agent's name
    settings = manifest["settings"]
    assert set(settings["event_subscriptions"]["bot_events"]) == {"app_mention", "message.channels", "message.groups",
                                                                  "app_home_opened"}
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True  # the staff's Home (adapters/slack_home.py)
    assert {"channels:history", "groups:history", "app_mentions:read"} <= scopes  # what those events need
    assert settings["interactivity"]["is_enabled"]
    assert settings["interactivity"]["request_url"] == settings["event_subscriptions"]["request_url"]
    assert settings["event_subscriptions"]["request_url"].endswith("/slack/events")


async def test_a_burst_from_someone_new_looks_them_up_once(slack: Harness):
    events = [slack.message_event("U0DANA", f"How do I export a transcript? ({i})") for i in range(8)]
    await asyncio.gather(*(slack.send_event(e) for e in events))
    await slack.settle()
    assert len(slack.fake.ok("users.info")) == 1
    assert len(slack.fake.posts(SHARED)) == 8


async def test_a_customer_writing_after_resolve_reopens_with_a_fresh_handoff(slack: Harness):
    ts, conversation_id, card_ts = await open_dispute(slack)
    await slack.click("U0SAM", blocks.CLAIM, conversation_id, card_ts)
    await slack.click("U0SAM", blocks.RESOLVE, conversation_id, card_ts)
    await slack.settle()
    await slack.say("U0ALEX", "It happened again: you charged us twice AGAIN this month", thread_ts=ts)
    await slack.settle()
    cards = top_level(slack.fake.posts(INTERNAL))
    assert len(cards) == 2  # a new card for the new handoff, unclaimed
    conversation = await slack.service.store.get_conversation(conversation_id)
    assert conversation is not None and conversation.state is ConversationState.escalated
    assert conversation.claimed_by is None
    await slack.click("U0KIM", blocks.CLAIM, conversation_id, cards[1]["posted_ts"])
    await slack.settle()
    assert "Claimed by <@U0KIM>" in text_of(slack.fake.ok("chat.update")[-1].args["blocks"])
