"""Discord end to end: the real discord.py client against a local fake of Discord's gateway and REST API
(tests/discord_fake.py), the staff side on the real Slack adapter against its fake, one real store
(SQLite and PostgreSQL). Each scenario asserts what was posted where, and what was stored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
from bot_process import free_port, running_bot
from discord_fake import (
    BOT,
    DANA,
    FORUM,
    GUILD,
    LOUNGE,
    MALLORY,
    MEMBER_ROLE,
    RIO,
    SAM,
    STAFF_ROLE,
    SUPPORT,
    TOKEN,
    FakeDiscord,
    member,
    user,
)
from slack_fake import INTERNAL, FakeSlack, Harness

from adapters import slack_blocks as blocks
from adapters.discord_gateway import TEXT_LIMIT, DiscordAdapter, DiscordConfig, DiscordConfigError, inert
from bot.app import Application
from bot.engine import Engine
from bot.model import ConversationState, Role
from bot.service import Service
from bot.settings import Settings
from bot.store import Store

DISPUTE = "This is ridiculous. You charged us twice for November and I want a refund NOW."
HOW_TO = "How do I connect my Outlook calendar?"


@dataclass
class Rig:
    """Discord customers, Slack staff, one service."""

    discord: DiscordAdapter
    fake: FakeDiscord
    slack: Harness
    service: Service

    async def say(self, author: int, content: str, **kw: Any) -> dict[str, Any]:
        """A message on the gateway, handled and its answers delivered."""
        payload = await self.fake.say(author, content, **kw)
        await self.discord.tracker.wait(payload["id"])
        await self.slack.settle()
        return payload

    async def conversation(self, thread: int, channel: int = SUPPORT) -> Any:
        return await self.service.store.find_conversation("discord", str(GUILD), str(channel), str(thread))

    async def said(self, thread: int, channel: int = SUPPORT) -> list[str]:
        """What the customers said in the conversation of ``thread``, as stored."""
        conversation = await self.conversation(thread, channel)
        assert conversation is not None, f"no conversation in {thread}"
        return [t["text"] for t in await self.service.store.transcript(conversation.id) if t["role"] == "customer"]

    async def edits(self) -> int:
        """Edits stored in the inbox."""
        from bot.store import inbox

        async with self.service.store.engine.begin() as conn:
            rows = (await conn.execute(inbox.select().where(inbox.c.kind == "edit"))).all()
        return len(rows)

    async def decisions(self, thread: int, channel: int = SUPPORT) -> int:
        conversation = await self.conversation(thread, channel)
        return len(await self.service.store.decisions_of(conversation.id))


def discord_config(fake: FakeDiscord, **overrides: Any) -> DiscordConfig:
    assert fake.server is not None
    values: dict[str, Any] = {"token": TOKEN, "channels": frozenset({SUPPORT, FORUM}),
                              "staff_roles": frozenset({STAFF_ROLE}), "api_url": str(fake.server.make_url("/api/v10")),
                              "gateway_url": fake.gateway_url}
    return DiscordConfig(**{**values, **overrides})


def alone(service: Service, config: DiscordConfig, **options: Any) -> DiscordAdapter:
    """The Discord platform in an application of its own (no Slack, no HTTP server)."""
    app = Application(Settings(), service.engine, service.store, service=service, port=0,
                      platforms={"discord": lambda a: DiscordAdapter(a, config, **options)})
    adapter = app.platforms["discord"]
    assert isinstance(adapter, DiscordAdapter)
    return adapter


async def connect(discord: DiscordAdapter) -> None:
    await asyncio.wait_for(discord.client.wait_until_ready(), 10)
    await discord.tracker.wait(f"catch-up:{discord.catch_ups + 1}")


@pytest.fixture
def fake_slack(fake: tuple[FakeSlack, str]) -> tuple[FakeSlack, str]:
    return fake


async def make_rig(service: Service, fake: FakeDiscord, fake_slack: tuple[FakeSlack, str]) -> Rig:
    config = discord_config(fake)
    slack = Harness(service, fake_slack[0], fake_slack[1],
                    platforms={"discord": lambda app: DiscordAdapter(app, config, guild_ready_timeout=0.05)})
    discord = slack.application.platforms["discord"]
    assert isinstance(discord, DiscordAdapter)
    await slack.start()
    await connect(discord)
    return Rig(discord, fake, slack, service)


@pytest.fixture
async def rig(store: Store, bot: Engine, fake_discord: FakeDiscord,
              fake_slack: tuple[FakeSlack, str]) -> AsyncIterator[Rig]:
    rig = await make_rig(Service(bot, store), fake_discord, fake_slack)
    yield rig
    await rig.discord.stop()
    await rig.slack.close()


# ---- translation: recorded gateway payloads -> Message ----


async def test_a_gateway_message_becomes_a_message_as_the_customer_wrote_it(rig: Rig):
    content = f"<@{BOT}> hi, <@{RIO}> and I can't find <#{LOUNGE}> notes <:notewise:1180000000000000900>"
    payload = await rig.say(DANA, content, mentions=[{**user(BOT), "member": member(BOT)},
                                                     {**user(RIO), "member": member(RIO)}],
                            attachments=[{"id": "1180000000000000901", "filename": "screenshot.png", "size": 1024,
                                          "url": "https://cdn.example/screenshot.png",
                                          "proxy_url": "https://cdn.example/p/screenshot.png",
                                          "content_type": "image/png", "width": 10, "height": 10}])
    conversation = await rig.conversation(int(payload["id"]))
    assert conversation is not None and conversation.platform == "discord"
    assert conversation.customer.id == str(DANA) and conversation.customer.name == "Dana"
    assert conversation.customer.role is Role.customer
    [line] = [t for t in await rig.service.store.transcript(conversation.id) if t["role"] == "customer"]
    assert line["text"] == ("hi, @Rio and I can't find #lounge notes :notewise:\n"
                            "[attachment: screenshot.png (image/png)]")
    assert line["event_id"] == payload["id"]


async def test_a_member_with_a_staff_role_is_staff_and_others_are_ignored(rig: Rig):
    handled = rig.discord.tracker.handled
    await rig.say(SAM, "Maintenance tonight at 22:00 UTC")  # staff, top level: not a customer conversation
    await rig.say(DANA, HOW_TO, channel=LOUNGE)  # not a support channel
    await rig.say(BOT, "I am the bot")  # ourselves
    system = await rig.say(DANA, "", type=18)  # THREAD_CREATED system message
    await rig.say(RIO, "hello from another bot", as_bot=True)
    assert rig.discord.tracker.handled == handled + 5
    assert rig.fake.sent == [] and rig.fake.threads_started == []
    assert await rig.conversation(int(system["id"])) is None
    assert rig.discord.content_missing == 0


async def test_a_how_to_is_answered_in_a_thread_on_the_customers_message(rig: Rig):
    first = await rig.say(DANA, HOW_TO)
    thread = int(first["id"])
    assert rig.fake.threads_started == [thread]  # a thread opened on the message has its id
    [reply] = rig.fake.posts(thread)
    assert "connect-calendars" in reply.body["content"]
    assert reply.body["allowed_mentions"] == {"parse": []}  # the bot never pings anyone
    await rig.say(DANA, "And Google Calendar too?", channel=thread)
    assert rig.fake.threads_started == [thread]  # the thread is reused
    assert len(rig.fake.posts(thread)) == 2 and rig.fake.posts(SUPPORT) == []
    conversation = await rig.conversation(thread)
    assert len([t for t in await rig.service.store.transcript(conversation.id) if t["role"] == "customer"]) == 2


async def test_a_forum_post_is_answered_in_the_post(rig: Rig):
    post = await rig.fake.forum_post(DANA, "Calendar", HOW_TO)
    await rig.discord.tracker.wait(str(post))
    await rig.slack.settle()
    assert rig.fake.threads_started == []  # a post is a thread already
    [reply] = rig.fake.posts(post)
    assert "connect-calendars" in reply.body["content"]
    conversation = await rig.conversation(post, channel=FORUM)
    assert conversation is not None
    web = rig.fake.server.make_url("/channels")  # type: ignore[union-attr]  # Discord's own origin in production
    assert await rig.discord.permalink(conversation) == f"{web}/{GUILD}/{post}/{post}"


# ---- the handoff to Slack and back ----


async def test_a_billing_dispute_goes_to_the_slack_card_and_send_to_customer_reaches_the_discord_thread(rig: Rig):
    first = await rig.say(DANA, DISPUTE)
    thread = int(first["id"])
    [notice] = rig.fake.posts(thread)
    assert "person from our team" in notice.body["content"]
    [card] = [p for p in rig.slack.fake.posts(INTERNAL) if not p.get("thread_ts")]
    shown = json.dumps(card["blocks"], ensure_ascii=False)
    assert "<!subteam^S0BILLING>" in card["text"] and "*HIGH*" in shown
    web = rig.fake.server.make_url("/channels")  # type: ignore[union-attr]
    assert f"{web}/{GUILD}/{SUPPORT}/{thread}|open in Discord" in shown
    assert "\u201ccharged us twice\u201d" in shown
    conversation = await rig.conversation(thread)
    card_ts = card["posted_ts"]

    assert await rig.slack.click("U0SAM", blocks.CLAIM, conversation.id, card_ts) == 200
    await rig.slack.settle()
    assert "Claimed by <@U0SAM>" in json.dumps(rig.slack.fake.ok("chat.update")[-1].args["blocks"])

    await rig.say(DANA, "Any news? This is the third time I ask.", channel=thread)  # mirrored, not answered
    assert len(rig.fake.posts(thread)) == 1
    mirrored = [p["text"] for p in rig.slack.fake.posts(INTERNAL) if p.get("thread_ts") == card_ts]
    assert any("(customer on Discord, new message): Any news?" in m for m in mirrored)

    await rig.slack.click("U0SAM", blocks.SEND, conversation.id, card_ts)
    view = rig.slack.fake.ok("views.open")[0].args["view"]
    assert await rig.slack.submit("U0SAM", view, "Hi Dana, I've refunded the duplicate November charge.") == 200
    await rig.slack.settle()
    sent = rig.fake.posts(thread)[-1]
    assert sent.body["content"] == "**Sam Agent** (support): Hi Dana, I've refunded the duplicate November charge."
    assert rig.fake.posts(SUPPORT) == [] and rig.fake.threads_started == [thread]

    assert await rig.slack.click("U0SAM", blocks.RESOLVE, conversation.id, card_ts) == 200
    await rig.slack.settle()
    assert (await rig.conversation(thread)).state is ConversationState.resolved
    assert "How did we do" in rig.fake.posts(thread)[-1].body["content"]  # the CSAT question, in Discord


async def test_a_staff_members_reply_in_the_thread_takes_the_conversation_over(rig: Rig):
    first = await rig.say(DANA, HOW_TO)
    thread = int(first["id"])
    await rig.say(SAM, "I'll walk you through it, Dana.", channel=thread)
    await rig.say(DANA, "Thanks! Also how do I export notes?", channel=thread)
    assert len(rig.fake.posts(thread)) == 1  # only the bot's first answer: staff have it now
    conversation = await rig.conversation(thread)
    assert conversation.claimed_by == str(SAM) and conversation.state is ConversationState.claimed


async def test_an_edit_that_raises_the_risk_is_decided_again(rig: Rig):
    first = await rig.say(DANA, "How do I export notes?")
    thread = int(first["id"])
    edited = {**first, "content": "You charged us twice, I want a refund now",
              "edited_timestamp": "2026-11-23T10:00:00.000000+00:00"}
    await rig.fake.dispatch("MESSAGE_UPDATE", edited)
    await rig.discord.tracker.wait(f"{thread}:edit")
    await rig.slack.settle()
    assert "<!subteam^S0BILLING>" in [p for p in rig.slack.fake.posts(INTERNAL) if not p.get("thread_ts")][0]["text"]
    handled = rig.discord.tracker.handled
    await rig.fake.dispatch("MESSAGE_UPDATE", {**edited, "embeds": []})  # the same edit again: once only
    await rig.discord.tracker.wait_count(handled + 1)
    await rig.slack.settle()
    assert len([p for p in rig.slack.fake.posts(INTERNAL) if not p.get("thread_ts")]) == 1


# ---- nothing lost, nothing answered twice ----


async def test_a_reconnect_fetches_missed_messages_and_answers_nothing_twice(rig: Rig):
    first = await rig.say(DANA, HOW_TO)
    thread = int(first["id"])
    assert len(rig.fake.posts(thread)) == 1
    # While the gateway was away: a new question in the channel and a follow-up in the thread.
    missed_top = await rig.fake.say(RIO, "How do I export notes to HubSpot?", live=False)
    await rig.fake.say(DANA, "And Google Calendar too?", channel=thread, live=False)
    # As if the process had died after answering but before it stored how far it had read: the
    # catch-up fetches the already-answered message again.
    async with rig.service.store.engine.begin() as conn:
        from bot.store import cursors

        await conn.execute(cursors.delete().where(cursors.c.place == str(thread)))
        await conn.execute(cursors.update().where(cursors.c.place == str(SUPPORT))
                           .values(last_seen=int(first["id"]) - 1))

    await rig.fake.reconnect()
    await rig.discord.tracker.wait(f"catch-up:{rig.discord.catch_ups + 1}")
    await rig.slack.settle()
    assert rig.fake.resumes == 1 and rig.fake.identifies == 1  # resumed, not a new session
    assert len(rig.fake.posts(thread)) == 2  # the follow-up answered; the first message not again
    assert len(rig.fake.posts(int(missed_top["id"]))) == 1  # the missed question answered once
    await rig.fake.reconnect()  # a second reconnect finds nothing new
    await rig.discord.tracker.wait(f"catch-up:{rig.discord.catch_ups + 1}")
    await rig.slack.settle()
    assert len(rig.fake.sent) == 3


async def test_a_live_message_handled_before_the_catch_up_does_not_hide_what_was_missed(rig: Rig):
    first = await rig.say(DANA, HOW_TO)
    thread = int(first["id"])
    await rig.fake.say(DANA, "How do I export notes to HubSpot?", channel=thread, live=False)
    await rig.discord.mark()  # the gateway is lost here
    await rig.say(DANA, "And Google Calendar too?", channel=thread)  # back, and this one arrives first
    assert await rig.discord.catch_up_now() >= 1
    conversation = await rig.conversation(thread)
    said = [t["text"] for t in await rig.service.store.transcript(conversation.id) if t["role"] == "customer"]
    assert sorted(said) == sorted([HOW_TO, "How do I export notes to HubSpot?", "And Google Calendar too?"])


async def test_on_a_first_start_what_was_written_before_baton_came_is_left_alone(
        store: Store, bot: Engine, fake_discord: FakeDiscord, fake_slack: tuple[FakeSlack, str]):
    old = await fake_discord.say(DANA, HOW_TO, live=False)
    post = await fake_discord.forum_post(RIO, "Billing", DISPUTE, live=False)
    rig = await make_rig(Service(bot, store), fake_discord, fake_slack)
    try:
        await rig.slack.settle()
        assert fake_discord.sent == [] and await rig.conversation(int(old["id"])) is None
        assert await rig.conversation(post, channel=FORUM) is None
        fresh = await rig.fake.forum_post(RIO, "Calendar", HOW_TO)  # what comes after is answered
        await rig.discord.tracker.wait(str(fresh))
        await rig.slack.settle()
        assert len(fake_discord.posts(fresh)) == 1
    finally:
        await rig.discord.stop()
        await rig.slack.close()


async def test_a_restart_fetches_what_was_written_while_baton_was_down(
        store: Store, bot: Engine, fake_discord: FakeDiscord, fake_slack: tuple[FakeSlack, str]):
    rig = await make_rig(Service(bot, store), fake_discord, fake_slack)
    first = await rig.say(DANA, HOW_TO)
    await rig.discord.stop()
    await rig.slack.close()
    thread = int(first["id"])
    await fake_discord.say(DANA, "And Google Calendar too?", channel=thread, live=False)
    post = await fake_discord.forum_post(RIO, "Billing", DISPUTE, live=False)
    again = await make_rig(Service(bot, store), fake_discord, fake_slack)  # a new process, the same database
    try:
        await again.slack.settle()
        assert len(fake_discord.posts(thread)) == 2
        assert "person from our team" in fake_discord.posts(post)[0].body["content"]
        assert fake_discord.identifies == 2
    finally:
        await again.discord.stop()
        await again.slack.close()


# ---- the Message Content intent ----


async def test_a_message_with_no_content_says_the_intent_is_missing_and_gets_no_reply(rig: Rig):
    with structlog.testing.capture_logs() as logs:
        await rig.say(DANA, "")
    assert rig.fake.sent == [] and rig.discord.content_missing == 1
    [error] = [e for e in logs if e["event"] == "discord_message_content_missing"]
    assert error["log_level"] == "error" and "Message Content Intent" in error["hint"]


async def test_a_bot_without_the_message_content_intent_is_refused_at_start(store: Store, bot: Engine):
    fake = FakeDiscord(app_flags=0)
    await fake.start()
    discord = alone(Service(bot, store), discord_config(fake))
    try:
        with pytest.raises(DiscordConfigError, match="Message Content Intent"):
            await discord.setup()
        assert fake.identifies == 0  # refused before the gateway
    finally:
        await discord.stop()
        await fake.close()


async def test_a_gateway_that_refuses_the_intent_stops_baton_with_the_reason(store: Store, bot: Engine):
    fake = FakeDiscord(allow_message_content=False)
    await fake.start()
    discord = alone(Service(bot, store), discord_config(fake))
    try:
        await discord.setup()
        await discord.start()
        with pytest.raises(DiscordConfigError, match="Message Content Intent"):
            await asyncio.wait_for(discord.closed, 10)
    finally:
        await discord.stop()
        await fake.close()


# ---- delivery ----


async def test_a_server_error_is_retried_and_a_refusal_is_kept_for_review(rig: Rig):
    rig.fake.fail("/messages", 503)  # discord.py hands a 503 back at once (a 500 it retries itself)
    first = await rig.say(DANA, HOW_TO)
    assert len(rig.fake.posts(int(first["id"]))) == 1  # delivered by the outbox's retry
    rig.fake.fail("/messages", 403)
    second = await rig.say(RIO, "How do I export notes to HubSpot?")
    assert rig.fake.posts(int(second["id"])) == []
    conversation = await rig.conversation(int(second["id"]))
    [row] = [r for r in await rig.service.store.outbox_of(conversation.id) if r["kind"] == "reply"]
    assert row["status"] == "failed" and "403" in row["last_error"]


async def test_a_long_answer_is_split_under_discords_limit(rig: Rig):
    from adapters.discord_gateway import _chunks

    text = ("word " * 900).strip()
    parts = list(_chunks(text, 2000))
    assert all(len(p) <= 2000 for p in parts) and " ".join(parts) == text


# ---- configuration ----


def test_the_configuration_is_validated_with_messages_that_say_what_to_fix():
    with pytest.raises(DiscordConfigError) as caught:
        DiscordConfig.from_settings(Settings(DISCORD_TOKEN="x", BATON_DISCORD_CHANNELS="support,123"))
    message = str(caught.value)
    assert "'support' is not a Discord ID" in message and "'123' is not a Discord ID" in message
    assert "BATON_DISCORD_STAFF_ROLES is not set" in message
    config = DiscordConfig.from_settings(Settings(DISCORD_TOKEN="secret-token", BATON_DISCORD_CHANNELS=str(SUPPORT),
                                                  BATON_DISCORD_STAFF_ROLES=str(STAFF_ROLE)))
    assert config.channels == {SUPPORT} and "secret-token" not in repr(config)


async def test_a_channel_the_bot_cannot_see_is_refused_at_start(store: Store, bot: Engine, fake_discord: FakeDiscord):
    discord = alone(Service(bot, store), discord_config(fake_discord, channels=frozenset({SUPPORT, 42})))
    try:
        with pytest.raises(DiscordConfigError, match="cannot see channel 42"):
            await discord.setup()
    finally:
        await discord.stop()


async def test_python_m_bot_runs_slack_and_discord_together(fake_discord: FakeDiscord,
                                                            fake_slack: tuple[FakeSlack, str], tmp_path: Path):
    """The README's run command with both platforms configured: a Discord customer is answered."""
    from slack_fake import SECRET
    from slack_fake import TOKEN as SLACK_TOKEN

    api, gateway = str(fake_discord.server.make_url("/api/v10")), fake_discord.gateway_url  # type: ignore[union-attr]
    env = {**os.environ, "SLACK_BOT_TOKEN": SLACK_TOKEN, "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": fake_slack[1],
           "BATON_CUSTOMER_CHANNELS": "", "BATON_INTERNAL_CHANNEL": INTERNAL, "PORT": str(free_port()),
           "DISCORD_TOKEN": TOKEN, "BATON_DISCORD_CHANNELS": f"{SUPPORT},{FORUM}",
           "BATON_DISCORD_STAFF_ROLES": str(STAFF_ROLE), "DISCORD_API_URL": api, "DISCORD_GATEWAY_URL": gateway,
           "BATON_DATABASE_URL": f"sqlite:///{tmp_path / 'baton.db'}", "SLACK_APP_TOKEN": ""}
    async with running_bot(env, tmp_path, ready="discord_caught_up") as bot:
        first = await fake_discord.say(DANA, HOW_TO)
        await fake_discord.wait_for(lambda f: bool(f.posts(int(first["id"]))), timeout=30)
        assert "connect-calendars" in fake_discord.posts(int(first["id"]))[0].body["content"]
    assert bot.returncode == 0, bot.output
    assert TOKEN not in bot.output and SLACK_TOKEN not in bot.output and SECRET not in bot.output


def test_discord_alone_is_refused_because_handoffs_go_to_slack(tmp_path: Path):
    import subprocess

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "BATON_", "DISCORD_")) or k == "BATON_CACHE_DIR"}
    env.update({"DISCORD_TOKEN": "x", "BATON_DISCORD_CHANNELS": str(SUPPORT),
                "BATON_DISCORD_STAFF_ROLES": str(STAFF_ROLE)})
    done = subprocess.run([sys.executable, "-m", "bot", "run"], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert "Slack must be configured too" in done.stderr and "SLACK_BOT_TOKEN" in done.stderr


async def test_a_message_the_inbox_could_not_store_is_fetched_again_once_it_can(
        rig: Rig, monkeypatch: pytest.MonkeyPatch):
    real = rig.service.receive
    calls = 0

    async def down_once(message: Any, **kw: Any) -> int | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionRefusedError("the database is down")
        return await real(message, **kw)

    monkeypatch.setattr(rig.service, "receive", down_once)
    rig.discord.retry_after = 0.0
    caught_up = rig.discord.catch_ups
    payload = await rig.fake.say(DANA, HOW_TO)
    await rig.discord.tracker.wait(f"catch-up:{caught_up + 1}")  # started by the failure, not a reconnect
    await rig.slack.settle()
    assert calls == 2 and len(rig.fake.posts(int(payload["id"]))) == 1



@pytest.mark.parametrize("lost", [503, None], ids=["503 after the post", "connection dropped after the post"])
async def test_a_reply_whose_answer_was_lost_is_not_posted_twice(rig: Rig, lost: int | None):
    rig.fake.fail_after("/messages", lost)
    first = await rig.say(DANA, HOW_TO)
    assert len(rig.fake.posts(int(first["id"]))) == 1  # the retry's nonce answered the first post
    conversation = await rig.conversation(int(first["id"]))
    [row] = [r for r in await rig.service.store.outbox_of(conversation.id) if r["kind"] == "reply"]
    assert row["status"] == "sent"


# ---- recorded payloads (tests/fixtures/discord): what customers really send ----

FIXTURES = Path(__file__).parent / "fixtures" / "discord"
RECORDED = {
    # the recorded servers and channels -> the test's
    "705745250815311942": GUILD, "185949590652977152": GUILD,
    "1072828564317159465": SUPPORT, "563557393640849437": SUPPORT, "1088465252804481025": SUPPORT,
    "1535645724761653309": FORUM,
    # the recorded people -> the test's customers
    "161098476632014848": DANA, "339560235050205185": DANA, "134127815531560960": DANA,
    "184437096813953035": RIO,
}
_SNOWFLAKE = re.compile(r"^\d{15,21}$")
_IDS = ("id", "channel_id", "message_id", "parent_id", "last_message_id", "owner_id", "guild_id", "webhook_id",
        "sticker_id", "nonce")


class Recorded:
    """Recorded gateway events, adapted in their ids only and sent through the fake gateway."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.ids = {old: str(new) for old, new in RECORDED.items()}

    def load(self, name: str) -> tuple[str, dict[str, Any]]:
        recorded = json.loads((FIXTURES / name).read_text())
        assert recorded["source"] and recorded["adapted"]
        frame = recorded["payload"]
        if "t" not in frame:  # a REST message: sent as the gateway sends one (with its guild)
            return "MESSAGE_CREATE", {**self.adapt(frame), "guild_id": str(GUILD)}
        return frame["t"], self.adapt(frame["d"])

    def adapt(self, value: Any, key: str | None = None) -> Any:
        """The same value with the test's ids: a recorded id always becomes the same new id; roles, the
        customers' role."""
        if isinstance(value, dict):
            return {k: self.adapt(v, k) for k, v in value.items()}
        if key == "roles" and isinstance(value, list):
            return [str(MEMBER_ROLE)] if value else []
        if isinstance(value, list):
            return [self.adapt(v, key) for v in value]
        if key in _IDS and isinstance(value, str) and _SNOWFLAKE.match(value):
            if value not in self.ids:
                self.ids[value] = str(self.rig.fake.next_id())
            return self.ids[value]
        return value

    async def send(self, name: str, *, wait: bool = True) -> dict[str, Any]:
        """Dispatch a recorded event; for a message or its update, wait until it is handled and its answers
        delivered."""
        event, payload = self.load(name)
        await self.rig.fake.replay(event, payload)
        if wait and event in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
            await self.rig.discord.tracker.wait(payload["id"] + (":edit" if event == "MESSAGE_UPDATE" else ""))
            await self.rig.slack.settle()
        return payload

    async def settle(self, *payloads: dict[str, Any]) -> None:
        for payload in payloads:
            await self.rig.discord.tracker.wait(payload["id"])
        await self.rig.slack.settle()


@pytest.fixture
def recorded(rig: Rig) -> Recorded:
    return Recorded(rig)


def cached(rig: Rig, message_id: str) -> Any:
    """The message as discord.py received it on the gateway."""
    [message] = [m for m in rig.discord.client.cached_messages if m.id == int(message_id)]
    return message


async def test_recorded_a_message_that_is_only_a_file_is_stored_by_name_and_answered(rig: Rig, recorded: Recorded):
    payload = await recorded.send("message_create_attachment.json")
    thread = int(payload["id"])
    assert await rig.said(thread) == ["[attachment: SPOILER_1122943867721875456.png (image/png)]"]
    assert len(rig.fake.posts(thread)) == 1 and rig.discord.content_missing == 0


async def test_recorded_a_forward_is_stored_and_answered_not_taken_for_a_missing_intent(rig: Rig, recorded: Recorded):
    with structlog.testing.capture_logs() as logs:
        payload = await recorded.send("message_create_forward.json")
    thread = int(payload["id"])
    assert payload["content"] == "" and payload["flags"] == 16384 and payload["message_reference"]["type"] == 1
    assert await rig.said(thread) == ["[forwarded]\n[attachment: IMG_7203.jpg (image/jpeg)]"]
    assert len(rig.fake.posts(thread)) == 1
    assert rig.discord.content_missing == 0 and not [e for e in logs if e["event"] == "discord_message_content_missing"]


async def test_recorded_a_forwarded_text_is_read_as_forwarded_and_a_bots_forward_is_not_answered(
        rig: Rig, recorded: Recorded):
    handled = rig.discord.tracker.handled
    payload = await recorded.send("message_forward_rest.json")  # forwarded by a bot
    assert rig.discord.tracker.handled == handled + 1 and rig.fake.sent == []  # bots are never answered
    text = rig.discord.text_of(cached(rig, payload["id"]))
    assert text.startswith("[forwarded]\n> What is Lorem Ipsum?\n> Lorem Ipsum is simply dummy text")


async def test_a_customers_forward_is_triaged_on_the_forwarded_words(rig: Rig):
    """The forwarded words are the customer's request: a forwarded billing dispute goes to staff."""
    forward = {"type": 1, "message_id": "1180000000000000999", "channel_id": str(LOUNGE), "guild_id": str(GUILD)}
    snapshot = {"type": 0, "content": DISPUTE, "mentions": [], "mention_roles": [], "attachments": [], "embeds": [],
                "timestamp": "2026-11-23T10:00:00.000000+00:00", "edited_timestamp": None, "flags": 0,
                "components": []}
    payload = await rig.say(DANA, "", flags=16384, message_reference=forward,
                            message_snapshots=[{"message": snapshot}])
    thread = int(payload["id"])
    assert await rig.said(thread) == ["[forwarded]\n> " + DISPUTE]
    assert "person from our team" in rig.fake.posts(thread)[0].body["content"]
    assert [p for p in rig.slack.fake.posts(INTERNAL) if not p.get("thread_ts")]  # the card


async def test_recorded_a_reply_quotes_the_message_it_replies_to(rig: Rig, recorded: Recorded):
    payload = await recorded.send("message_create_reply.json")
    thread = int(payload["id"])
    assert payload["type"] == 19 and payload["referenced_message"]["author"]["username"] == "Reacton"
    assert await rig.said(thread) == ["[in reply to Reacton]\ncool."]  # its embed has no title: nothing quoted
    assert len(rig.fake.posts(thread)) == 1


@pytest.mark.parametrize("referenced", ["missing", "deleted"])
async def test_a_reply_to_a_message_that_is_not_available_has_no_quote(rig: Rig, referenced: str):
    gone = {"referenced_message": None} if referenced == "deleted" else {}  # deleted: null; not fetched: absent
    payload = await rig.say(DANA, HOW_TO, type=19, **gone,
                            message_reference={"message_id": "1180000000000000998", "channel_id": str(SUPPORT),
                                               "guild_id": str(GUILD)})
    assert await rig.said(int(payload["id"])) == [HOW_TO]
    assert len(rig.fake.posts(int(payload["id"]))) == 1


async def test_a_reply_quotes_the_bots_answer_and_the_detectors_do_not_read_it(rig: Rig):
    first = await rig.say(DANA, HOW_TO)
    thread = int(first["id"])
    [answer] = rig.fake.messages_in(thread)
    quoted = {k: v for k, v in answer.items() if k not in ("member", "nonce")}
    await rig.say(DANA, "thanks!", channel=thread, type=19, referenced_message=quoted,
                  message_reference={"message_id": answer["id"], "channel_id": str(thread), "guild_id": str(GUILD)})
    said = await rig.said(thread)
    assert said[1].startswith("[in reply to Baton]\n> ") and said[1].endswith("\nthanks!")
    assert "connect-calendars" in said[1]


async def test_a_reply_to_a_forward_whose_snapshot_lacks_its_type_is_read_and_the_gateway_stays_up(rig: Rig):
    """Discord sends the snapshot of a replied-to forward without ``type`` (discord/discord-api-docs#7814),
    which discord.py 2.7 cannot read: it would end the connection, and Baton with it."""
    snapshot = {"type": 0, "content": "Our export is failing", "attachments": [], "embeds": [], "flags": 0,
                "timestamp": "2026-11-23T09:00:00.000000+00:00", "edited_timestamp": None, "components": []}
    forward = await rig.say(DANA, "", flags=16384, message_snapshots=[{"message": snapshot}],
                            message_reference={"type": 1, "message_id": "1180000000000000997",
                                               "channel_id": str(LOUNGE), "guild_id": str(GUILD)})
    as_replied = {k: v for k, v in forward.items() if k not in ("member", "nonce")}
    as_replied["message_snapshots"] = [{"message": {k: v for k, v in snapshot.items()
                                                    if k in ("attachments", "content", "edited_timestamp", "embeds",
                                                             "flags", "timestamp")}}]  # as reported: no type
    reply = await rig.say(RIO, "Same here since Monday", type=19, referenced_message=as_replied,
                          message_reference={"message_id": forward["id"], "channel_id": str(SUPPORT),
                                             "guild_id": str(GUILD)})
    assert await rig.said(int(reply["id"])) == ["[in reply to Dana]\n> [forwarded]\n> > Our export is failing\n"
                                                "Same here since Monday"]
    assert not rig.discord.client.is_closed() and not rig.discord.closed.done()


async def test_a_message_discordpy_cannot_read_is_logged_and_the_next_one_is_answered(rig: Rig):
    broken = rig.fake.message(SUPPORT, DANA, HOW_TO)
    del broken["author"]
    with structlog.testing.capture_logs() as logs:
        await rig.fake.dispatch("MESSAGE_CREATE", broken)
        after = await rig.say(DANA, HOW_TO)
    assert len(rig.fake.posts(int(after["id"]))) == 1 and not rig.discord.closed.done()
    [unreadable] = [e for e in logs if e["event"] == "discord_event_unreadable"]
    assert unreadable["event_id"] == broken["id"] and "author" in unreadable["error"]


@pytest.mark.parametrize(("fixture", "text"), [("message_create_sticker.json", "Message with text and sticker!\n"
                                                                               "[sticker: sticker1]"),
                                               ("message_create_sticker_only.json", "[sticker: Happy]")])
async def test_recorded_stickers_are_stored_by_name(rig: Rig, recorded: Recorded, fixture: str, text: str):
    payload = await recorded.send(fixture)
    assert await rig.said(int(payload["id"])) == [text]
    assert len(rig.fake.posts(int(payload["id"]))) == 1 and rig.discord.content_missing == 0


async def test_recorded_a_webhooks_embed_is_read_by_its_title_and_not_answered(rig: Rig, recorded: Recorded):
    payload = await recorded.send("message_create_webhook_embed.json")
    assert payload["webhook_id"] and rig.fake.sent == [] and rig.discord.content_missing == 0
    text = rig.discord.text_of(cached(rig, payload["id"]))
    assert text == ("[embed: lamdera/compiler Pull request opened: #92 Allow configuring <html lang> via "
                    "html-lang file]")


async def test_recorded_a_link_preview_added_later_is_not_an_edit(rig: Rig, recorded: Recorded):
    link = await recorded.send("message_create_link.json")
    thread = int(link["id"])
    assert len(rig.fake.posts(thread)) == 1 and await rig.decisions(thread) == 1
    update = await recorded.send("message_update_link_preview.json")
    assert update["id"] == link["id"] and update["embeds"] and update["edited_timestamp"] is None
    assert await rig.edits() == 0 and await rig.decisions(thread) == 1 and len(rig.fake.posts(thread)) == 1
    assert await rig.said(thread) == ["https://www.youtube.com/watch?v=zAFDQH19pV4"]
    # The same update with an edit time is an edit.
    edited = "2026-11-23T10:00:00.000000+00:00"
    await rig.fake.dispatch("MESSAGE_UPDATE", {**update, "edited_timestamp": edited})
    await rig.discord.tracker.wait(f"{thread}:edit:{edited}")  # the inbox worked on it
    assert await rig.edits() == 1


async def test_recorded_a_thread_a_customer_opens_on_a_message_is_one_conversation(rig: Rig, recorded: Recorded):
    top = await recorded.send("message_create_top_level.json", wait=False)  # Rio asks
    thread = int(top["id"])
    await recorded.send("message_update_has_thread.json")  # flagged HAS_THREAD: not an edit
    opened = await recorded.send("thread_create_on_message.json")  # Dana opens a thread on it by hand
    assert int(opened["id"]) == thread and int(opened["parent_id"]) == SUPPORT
    starter = await recorded.send("message_create_thread_starter.json", wait=False)  # type 21: not a customer's
    await recorded.settle(top, starter)
    inside = await recorded.send("message_create_first_in_thread.json")  # Dana writes in it
    assert int(inside["channel_id"]) == thread
    assert await rig.said(thread) == ["test", "First message inside thread"]
    assert rig.fake.threads_started == [] and rig.fake.posts(SUPPORT) == []  # answered in the customer's thread
    assert len(rig.fake.posts(thread)) == 2 and await rig.decisions(thread) == 2 and await rig.edits() == 0


async def test_recorded_a_thread_opened_by_hand_on_no_message_is_served_in_it(rig: Rig, recorded: Recorded):
    system = await recorded.send("message_create_thread_created.json")  # type 18 in the channel: ignored
    opened = await recorded.send("thread_create.json")
    thread = int(opened["id"])
    inside = await recorded.send("message_create_in_thread.json")
    assert int(inside["channel_id"]) == thread and system["type"] == 18
    assert await rig.said(thread) == ["Thread message"]  # the system message is not the customer's
    assert len(rig.fake.posts(thread)) == 1 and rig.fake.posts(SUPPORT) == []
    assert rig.fake.threads_started == [] and rig.fake.thread_requests == []


async def test_a_staff_reply_after_a_restart_reaches_an_archived_thread_opened_by_hand(
        store: Store, bot: Engine, fake_discord: FakeDiscord, fake_slack: tuple[FakeSlack, str]):
    """The thread hangs on no message (opening one is refused as "Unknown Message"), and neither the new
    process's cache nor the gateway knows it (archived threads are not sent on connect): it is found by
    asking Discord, and the reply goes into it."""
    rig = await make_rig(Service(bot, store), fake_discord, fake_slack)
    try:
        opened = await Recorded(rig).send("thread_create.json")
        thread = int(opened["id"])
        await rig.say(DANA, DISPUTE, channel=thread)
        [card] = [p for p in rig.slack.fake.posts(INTERNAL) if not p.get("thread_ts")]
        conversation = await rig.conversation(thread)
    finally:
        await rig.discord.stop()
        await rig.slack.close()
    fake_discord.channels[thread]["thread_metadata"]["archived"] = True  # quiet for days
    again = await make_rig(Service(bot, store), fake_discord, fake_slack)
    try:
        assert again.discord.client.get_channel(thread) is None
        assert await again.slack.click("U0SAM", blocks.CLAIM, conversation.id, card["posted_ts"]) == 200
        await again.slack.click("U0SAM", blocks.SEND, conversation.id, card["posted_ts"])
        view = again.slack.fake.ok("views.open")[-1].args["view"]
        assert await again.slack.submit("U0SAM", view, "We refunded the duplicate charge.") == 200
        await again.slack.settle()
        assert fake_discord.posts(thread)[-1].body["content"].endswith("We refunded the duplicate charge.")
        assert fake_discord.threads_started == [] and len(fake_discord.thread_requests) == 1  # refused: not a message
        assert fake_discord.posts(SUPPORT) == []
    finally:
        await again.discord.stop()
        await again.slack.close()


async def test_recorded_a_forum_post_and_its_reply_are_one_conversation(rig: Rig, recorded: Recorded):
    opened = await recorded.send("thread_create_forum_post.json")
    post = int(opened["id"])
    first = await recorded.send("message_create_forum_post.json")
    assert int(first["id"]) == post  # a post's first message has the thread's id
    await recorded.send("message_create_forum_reply.json")
    assert await rig.said(post, channel=FORUM) == ["The text of the post", "A reply to the post"]
    assert len(rig.fake.posts(post)) == 2 and rig.fake.threads_started == []


async def test_a_message_is_cut_at_discords_longest_before_triage(rig: Rig):
    payload = await rig.say(DANA, "How do I export my notes? " + "x" * 5000)
    [text] = await rig.said(int(payload["id"]))
    assert len(text) == TEXT_LIMIT == 4000 and text.startswith("How do I export my notes? xxx")


# ---- nothing a customer typed can notify anyone through the bot ----

NOTIFIES = re.compile(r"@(?:everyone|here)|<@[!&]?\d+>")
"""What Discord would turn into a notification, anywhere in a text."""


def test_inert_text_reads_the_same_and_notifies_nobody():
    text = f"@everyone @here everyone@here <@{DANA}> <@!{DANA}> <@&{STAFF_ROLE}> dana@example.com #general"
    made = inert(text)
    assert not NOTIFIES.search(made) and made.replace("\u200b", "") == text


async def test_nothing_a_customer_typed_notifies_anyone_in_any_post_of_the_bot(rig: Rig):
    """Display name, message text, meeting name (read back) and file name carry @everyone, @here, a user
    and a role mention: every post (questions, the read-back, the handoff notice, a staff reply) and the
    thread the bot opens notify nobody, send no mention and no link preview."""
    pings = f"@everyone @here <@{SAM}> <@&{STAFF_ROLE}>"
    screenshot = {"id": "1180000000000000950", "filename": f"{pings}.png", "size": 10, "content_type": "image/png",
                  "url": "https://cdn.example/x.png", "proxy_url": "https://cdn.example/p/x.png"}
    first = await rig.say(MALLORY, f'{pings} The recording of our meeting "everyone@here sync" is missing',
                          attachments=[screenshot])
    thread = int(first["id"])
    await rig.say(MALLORY, f"{pings} it was yesterday at 3pm PST", channel=thread)
    await rig.say(MALLORY, "yes", channel=thread)
    conversation = await rig.conversation(thread)
    [card] = [p for p in rig.slack.fake.posts(INTERNAL) if not p.get("thread_ts")]
    await rig.slack.click("U0SAM", blocks.SEND, conversation.id, card["posted_ts"])
    view = rig.slack.fake.ok("views.open")[0].args["view"]
    assert await rig.slack.submit("U0SAM", view, "Thanks team@everyone, we are on it.") == 200
    await rig.slack.settle()

    kinds = {r["kind"] for r in await rig.service.store.outbox_of(conversation.id)
             if r["status"] == "sent" and r["kind"] in ("reply", "ask_details", "staff_reply")}
    assert kinds == {"reply", "ask_details", "staff_reply"}
    posts = rig.fake.posts(thread)
    assert len(posts) >= 4 and rig.fake.posts(SUPPORT) == []
    assert any("everyone@\u200bhere sync" in p.body["content"] for p in posts)  # the read-back echoes it, inert
    assert any("team@\u200beveryone" in p.body["content"] for p in posts)  # the staff reply too
    for post in posts:
        assert post.body["allowed_mentions"] == {"parse": []}
        assert post.body["flags"] & 4  # SUPPRESS_EMBEDS: no link previews
        assert not NOTIFIES.search(post.body["content"]), post.body["content"]
    [opened] = rig.fake.thread_requests
    assert not NOTIFIES.search(opened["name"]) and opened["name"].replace("\u200b", "").startswith("@everyone")


# ---- catching up from the stored cursors ----


def history_requests(fake: FakeDiscord, place: int) -> int:
    return sum(1 for method, path in fake.requests if method == "GET" and path == f"/channels/{place}/messages")


async def test_a_resume_with_a_stale_cache_fetches_what_only_the_history_has(rig: Rig):
    first = await rig.say(DANA, HOW_TO)
    thread = int(first["id"])
    cached_thread = rig.discord.client.get_channel(thread)
    assert cached_thread is not None and cached_thread.last_message_id == int(rig.fake.posts(thread)[0].id)
    # Written while the gateway was away and not replayed on resume: only the history endpoint has it. The
    # client's cache still says the bot's answer is the thread's last message, and so does the cursor.
    missed = await rig.fake.say(DANA, "How do I export notes to HubSpot?", channel=thread, live=False)
    assert rig.discord.client.get_channel(thread).last_message_id < int(missed["id"])  # type: ignore[union-attr]
    await rig.fake.reconnect()
    await rig.discord.tracker.wait(f"catch-up:{rig.discord.catch_ups + 1}")
    await rig.slack.settle()
    assert rig.fake.resumes == 1 and rig.fake.identifies == 1
    assert await rig.said(thread) == [HOW_TO, "How do I export notes to HubSpot?"]
    assert len(rig.fake.posts(thread)) == 2  # answered once
    asked = history_requests(rig.fake, thread)
    assert asked >= 1
    await rig.discord.tracker.wait(str(rig.fake.posts(thread)[-1].id))  # the gateway told of the answer, read
    await rig.fake.reconnect()  # nothing new: the thread's history is not even asked for
    await rig.discord.tracker.wait(f"catch-up:{rig.discord.catch_ups + 1}")
    await rig.slack.settle()
    assert history_requests(rig.fake, thread) == asked and len(rig.fake.posts(thread)) == 2


async def test_a_thread_opened_by_hand_while_the_gateway_was_away_is_caught_up(rig: Rig, recorded: Recorded):
    await recorded.send("message_create_thread_created.json")  # so the channel's cursor is before the thread
    event, opened = recorded.load("thread_create.json")
    thread = int(opened["id"])
    rig.fake.channels[thread] = opened  # opened, and written in, while away: no gateway event
    missed = await rig.fake.say(DANA, HOW_TO, channel=thread, live=False)
    await rig.fake.reconnect()
    await rig.discord.tracker.wait(f"catch-up:{rig.discord.catch_ups + 1}")
    await rig.slack.settle()
    assert await rig.said(thread) == [HOW_TO] and int(missed["id"]) > thread
    assert len(rig.fake.posts(thread)) == 1 and rig.fake.threads_started == []


logging.getLogger("discord").setLevel(logging.WARNING)


def test_a_masked_link_in_a_customers_words_is_not_a_link_in_the_bots_post():
    posted = inert("Weekly [Reset your password](https://evil.example) Sync @everyone <@123456789012345678>")
    assert "](" not in posted and "@everyone" not in posted and "<@123456789012345678>" not in posted
    assert "Reset your password" in posted and "evil.example" in posted  # the words are all still there
