"""Discord end to end: the real discord.py client against a local fake of Discord's gateway and REST API
(tests/discord_fake.py), the staff side on the real Slack adapter against its fake, one real store
(SQLite and PostgreSQL). Each scenario asserts what was posted where, and what was stored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
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
from adapters.discord_gateway import DiscordAdapter, DiscordConfig, DiscordConfigError
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
    assert line["text"] == "hi, @Rio and I can't find #lounge notes :notewise:\n[attachment: screenshot.png]"
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

logging.getLogger("discord").setLevel(logging.WARNING)
