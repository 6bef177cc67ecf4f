"""Real Slack payloads, replayed through the real app over HTTP.

Each file in ``tests/fixtures/slack/`` is a payload recorded from Slack (or, where one says so, taken from
Slack's documentation), with its source and what was adapted: ids only. Here each one is adapted once more
to this run (the customer channel, the customer's and the installing team, fresh timestamps and event ids),
signed and posted to ``/slack/events`` of the real Bolt app, against the fake Web API of
``tests/slack_fake.py``. The assertions read what the store kept and what was posted.
"""

from __future__ import annotations

import copy
import itertools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from slack_fake import APP_ID, BOT_USER, HOST_TEAM, INTERNAL, PEOPLE, SHARED, FakeSlack, Harness

from adapters import slack_blocks as blocks
from bot.engine import Engine
from bot.model import ConversationState
from bot.service import Service
from bot.store import Store, conversations, inbox, messages

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "slack"
DISPUTE = "This is ridiculous. You charged us twice for November and I want a refund NOW."
_TS_KEYS = {"ts", "event_ts", "thread_ts", "deleted_ts", "latest_reply", "message_ts"}
_stamps = itertools.count(300_000)
_ids = itertools.count(1)


def fixture(name: str) -> dict[str, Any]:
    document = json.loads((FIXTURES / f"{name}.json").read_text())
    assert document["source"] and document["adapted"], f"{name}: say where it came from and what was changed"
    return dict(document["payload"])


@pytest.fixture
async def slack(sqlite_store: Store, bot: Engine) -> AsyncIterator[Harness]:
    server = FakeSlack()
    recorded = fixture("files_info")  # what files.info answers for the Slack Connect file
    server.files[recorded["file"]["id"]] = recorded["file"]
    url = await server.start()
    try:
        async with Harness(Service(bot, sqlite_store), server, url) as harness:
            yield harness
    finally:
        await server.close()


# ---- adapting a recorded payload to this run ----


def _team_of(user: object) -> str:
    return str(PEOPLE[user]["team_id"]) if isinstance(user, str) and user in PEOPLE else HOST_TEAM


def _fresh_stamps(event: dict[str, Any]) -> dict[str, str]:
    """Every timestamp in the event, old -> new, in the same order (so threads and edits still line up)."""
    found: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key in _TS_KEYS and isinstance(inner, str):
                    found.add(inner)
                walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    walk(event)
    now = int(time.time())
    return {old: f"{now}.{next(_stamps):06d}" for old in sorted(found, key=float)}


def _adapted_event(event: dict[str, Any], stamps: dict[str, str]) -> dict[str, Any]:
    original_channel = event.get("channel")

    def walk(value: Any, author: object = None) -> Any:
        if isinstance(value, dict):
            who = value.get("user", author)
            out = {}
            for key, inner in value.items():
                if key in _TS_KEYS and isinstance(inner, str):
                    out[key] = stamps.get(inner, inner)
                elif key == "channel" and inner == original_channel:
                    out[key] = SHARED
                elif key in ("team", "user_team", "source_team") and isinstance(inner, str):
                    out[key] = _team_of(who)
                else:
                    out[key] = walk(inner, who)
            return out
        if isinstance(value, list):
            return [walk(inner, author) for inner in value]
        return value

    adapted = walk(event)
    adapted["channel"] = SHARED
    return dict(adapted)


def replayable(payload: dict[str, Any], stamps: dict[str, str] | None = None) -> dict[str, Any]:
    """The recorded ``event_callback`` as this run's Slack would send it."""
    body = copy.deepcopy(payload)
    event = body["event"]
    stamps = stamps if stamps is not None else _fresh_stamps(event)
    body.pop("enterprise_id", None)
    body.update(token="legacy", team_id=HOST_TEAM, api_app_id=APP_ID, event_id=f"Ev0REPLAY{next(_ids):06d}",
                event_time=int(time.time()), is_ext_shared_channel=True, event=_adapted_event(event, stamps),
                authorizations=[{"enterprise_id": None, "team_id": HOST_TEAM, "user_id": BOT_USER, "is_bot": True,
                                 "is_enterprise_install": False}])
    if "context_team_id" in body:
        body["context_team_id"] = HOST_TEAM
    return body


async def post_event(slack: Harness, body: dict[str, Any]) -> None:
    status = await slack.post(json.dumps(body), "application/json")
    assert status == 200, slack.last_response
    await slack.tracker.wait(body["event_id"])


async def customer_texts(slack: Harness, thread: str) -> list[str]:
    conversation = await slack.service.store.find_conversation("slack", HOST_TEAM, SHARED, thread)
    assert conversation is not None, f"nothing stored for thread {thread}"
    return [m["text"] for m in await slack.service.store.transcript(conversation.id) if m["role"] == "customer"]


def replies(slack: Harness, thread: str) -> list[dict[str, Any]]:
    return [p for p in slack.fake.posts(SHARED) if p.get("thread_ts") == thread]


async def count(store: Store, table: sa.Table, *where: Any) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table).where(*where))).scalar_one())


# ---- what a customer sends is read whole ----

ANSWERED: dict[str, list[str]] = {
    "message_file_share": ["message message message\n[attachment: namenamename.txt (Plain Text)]"],
    # a Slack Connect file arrives as {"file_access": "check_file_info"}: its name comes from files.info
    "message_file_share_slack_connect": ["Message with a file shared from a Slack Connect channel\n"
                                         "[attachment: tedair.gif]"],
    "message_me_message": ["is doing that thing"],
    "message_forwarded": ["[forwarded from lev]\n> 123"],
    "message_shared_with_comment": ["hello check that out!\n"
                                    "[forwarded from lev]\n> this will be shared with a message"],
    "message_shared_without_comment": ["[forwarded from jadel]\n> blahblahblahblahblah"],
    "message_rich_text_channel_user_link": ["#general :cat: @Dana Smith https://google.com text text text"],
    "message_rich_text_user_and_channel": ["@Sam Agent #general message with both channel and user mentions"],
    "message_rich_text_here_channel": [
        "@channel @here Sorry for mentioning. This is for the test fixtures for the Slack integration update PR "
        "I'm working on and can't be done in a private channel. :bow:"],
    "message_rich_text_code_entities": [
        fixture("message_rich_text_code_entities")["event"]["text"].replace("-&gt;", "->")],
    # <#C…> without a name: the name from conversations.info, or the id when Slack does not know it
    "message_documented_markup": [
        "@everyone @release-team #acme-notewise #C123ABC456 Email Bob Roberts "
        "This message is a link (http://www.example.com) https://slack.com Posted 2014-02-18 6:39:42 AM PST "
        "&lt;b&gt; & co"],
}


@pytest.mark.parametrize("name", sorted(ANSWERED))
async def test_a_customer_message_is_stored_as_written_and_answered_once(slack: Harness, name: str):
    body = replayable(fixture(name))
    await post_event(slack, body)
    await slack.settle()
    event = body["event"]
    thread = event.get("thread_ts") or event["ts"]
    assert await customer_texts(slack, thread) == ANSWERED[name]
    assert len(replies(slack, thread)) == 1


async def test_a_thread_broadcast_is_a_reply_in_its_thread(slack: Harness):
    recorded = fixture("message_thread_broadcast")
    stamps = _fresh_stamps(recorded["event"])
    event = recorded["event"]  # the thread's first message is in the broadcast's "root": it is sent first
    first = {**event["root"], "channel": event["channel"], "event_ts": event["root"]["ts"]}
    root = replayable({**recorded, "event": first}, stamps)
    await post_event(slack, root)
    broadcast = replayable(recorded, stamps)
    await post_event(slack, broadcast)
    await slack.settle()
    thread = root["event"]["ts"]
    assert broadcast["event"]["thread_ts"] == thread
    assert await customer_texts(slack, thread) == ["Write in the thread :bow:", "Hi there!"]
    assert len(replies(slack, thread)) == 2  # one answer each; the broadcast opened nothing new
    assert await count(slack.service.store, conversations) == 1


async def test_an_app_mention_and_its_message_are_answered_once_without_our_mention(slack: Harness):
    mention = replayable(fixture("app_mention"))
    also = copy.deepcopy(mention)  # Slack sends the same message twice: as app_mention and as message
    also.update(event_id=f"Ev0REPLAY{next(_ids):06d}", event={**mention["event"], "type": "message"})
    await post_event(slack, mention)
    await post_event(slack, also)
    await slack.settle()
    thread = mention["event"]["ts"]
    assert await customer_texts(slack, thread) == ["ping"]
    assert len(replies(slack, thread)) == 1


# ---- what is not a customer's message is neither stored nor answered ----

IGNORED = ["message_deleted", "message_bot_message", "message_other_app", "message_channel_join",
           "message_own_bot_post", "message_changed_unfurl"]


@pytest.mark.parametrize("name", IGNORED)
async def test_deletions_bots_joins_our_own_posts_and_unfurls_store_nothing(slack: Harness, name: str):
    await post_event(slack, replayable(fixture(name)))
    await slack.settle()
    store = slack.service.store
    assert await count(store, conversations) == 0
    assert await count(store, messages) == 0
    assert slack.fake.posts() == []


async def test_an_edit_by_the_customer_is_handled_as_an_edit(slack: Harness):
    recorded = fixture("message_changed")
    stamps = _fresh_stamps(recorded["event"])
    edit = replayable(recorded, stamps)
    edited = edit["event"]["message"]
    event = recorded["event"]  # the edited message, as it was first sent
    before = {**event["message"], "channel": event["channel"], "event_ts": event["message"]["ts"]}
    before.pop("edited")
    first = replayable({**recorded, "event": before}, stamps)
    await post_event(slack, first)
    await slack.settle()
    assert len(replies(slack, edited["ts"])) == 1
    await post_event(slack, edit)
    await slack.settle()
    store = slack.service.store
    assert await count(store, inbox) == 2  # the edit was kept and worked on, not dropped
    assert await count(store, inbox, inbox.c.status.in_(("pending", "failed"))) == 0
    assert await customer_texts(slack, edited["ts"]) == ["Hello, world!"]  # not a second message
    assert len(replies(slack, edited["ts"])) == 1  # an edit that raises no risk is not answered again


# ---- clicks and modals on the card ----


async def open_dispute(slack: Harness) -> tuple[str, str, str]:
    """A billing dispute handed over; (customer thread ts, conversation id, card ts)."""
    ts = await slack.say("U0ALEX", DISPUTE)
    await slack.settle()
    [card] = [p for p in slack.fake.posts(INTERNAL) if not p.get("thread_ts")]
    conversation = await slack.service.store.find_conversation("slack", HOST_TEAM, SHARED, ts)
    assert conversation is not None
    return ts, conversation.id, str(card["posted_ts"])


def as_clicked(payload: dict[str, Any], who: str) -> dict[str, Any]:
    """``who``: "staff" (as recorded, adapted), "no team" (no ``user.team_id``) or "another team"."""
    payload = copy.deepcopy(payload)
    payload["trigger_id"] = f"{next(_ids)}.{int(time.time())}.replay"
    if who == "no team":
        payload["user"].pop("team_id")
    elif who == "another team":
        payload["user"]["team_id"] = "T0ACME0001"
    return payload


def refusal(slack: Harness, user: str) -> str:
    [ephemeral] = slack.fake.ok("chat.postEphemeral")
    assert ephemeral.args["user"] == user
    return str(ephemeral.args["text"])


@pytest.mark.parametrize("who", ["staff", "no team", "another team"])
async def test_a_recorded_claim_click_works_for_staff_only(slack: Harness, who: str):
    _ts, conversation_id, card_ts = await open_dispute(slack)
    click = as_clicked(fixture("block_actions"), who)
    assert click["actions"][0]["action_id"] == blocks.CLAIM
    click["actions"][0]["value"] = conversation_id
    click["container"]["message_ts"] = card_ts
    assert await slack.interact(click) == 200
    await slack.settle()
    conversation = await slack.service.store.get_conversation(conversation_id)
    assert conversation is not None
    if who == "staff":
        assert conversation.claimed_by == "U0SAM" and conversation.state is ConversationState.claimed
        assert slack.fake.ok("chat.postEphemeral") == []
    else:
        assert conversation.claimed_by is None and conversation.state is ConversationState.escalated
        text = refusal(slack, "U0SAM")
        assert text and "gone" not in text.lower()


@pytest.mark.parametrize("who", ["staff", "no team", "another team"])
async def test_a_recorded_send_to_customer_submission_works_for_staff_only(slack: Harness, who: str):
    ts, conversation_id, _card_ts = await open_dispute(slack)
    before = len(replies(slack, ts))
    submission = as_clicked(fixture("view_submission"), who)
    assert submission["view"]["callback_id"] == blocks.SEND_VIEW
    submission["view"]["private_metadata"] = conversation_id
    assert await slack.interact(submission) == 200
    await slack.settle()
    sent = replies(slack, ts)[before:]
    if who == "staff":
        assert [(p["text"], p.get("username")) for p in sent] == [("test", "Sam Agent (support)")]
    else:
        assert sent == []
        assert "gone" not in slack.last_response.lower()
        told = [c.args["text"] for c in slack.fake.ok("chat.postEphemeral")]
        answer = json.loads(slack.last_response) if slack.last_response.strip().startswith("{") else {}
        told += list((answer.get("errors") or {}).values())
        assert told, "the refusal is said to the person who submitted"


def test_every_fixture_says_where_it_came_from_and_is_replayed():
    replayed = {*ANSWERED, *IGNORED, "message_thread_broadcast", "app_mention", "message_changed", "block_actions",
                "view_submission", "files_info"}
    assert {p.stem for p in FIXTURES.glob("*.json")} == replayed
    for name in replayed:
        fixture(name)
