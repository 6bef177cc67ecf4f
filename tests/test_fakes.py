"""The local fakes of Slack and Discord, driven by the real clients (slack-sdk's AsyncWebClient, discord.py's
HTTP client): what "delivered once" needs from them. A post whose answer is lost exists afterwards and can be
found (Slack: by its metadata in conversations.replies/history); Discord's enforced nonce answers the first
message again instead of creating a second one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from discord.http import Route, handle_message_parameters
from discord_fake import BOT, DANA, LOUNGE, SUPPORT, FakeDiscord
from discord_fake import TOKEN as DISCORD_TOKEN
from slack_fake import BOT_ID, BOT_USER, INTERNAL, OUTBOX_EVENT, SHARED, TOKEN, FakeSlack, message_event
from slack_sdk.errors import SlackApiError
from slack_sdk.models.metadata import Metadata
from slack_sdk.web.async_client import AsyncWebClient

CUSTOMER_THREAD = "1790000000.000100"  # a customer's message the fake never saw posted


def outbox(outbox_id: int) -> dict[str, Any]:
    return {"event_type": OUTBOX_EVENT, "event_payload": {"outbox_id": outbox_id}}


class Clock:
    """Time that a test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def slack(fake: tuple[FakeSlack, str]) -> tuple[FakeSlack, str]:
    return fake


@pytest.fixture
async def web(slack: tuple[FakeSlack, str]) -> AsyncIterator[AsyncWebClient]:
    """The client as Baton should build it: one session, and no silent re-post after a lost connection."""
    async with aiohttp.ClientSession() as session:
        yield AsyncWebClient(token=TOKEN, base_url=slack[1], session=session, retry_handlers=[], timeout=5)


async def reply(web: AsyncWebClient, text: str, outbox_id: int, thread: str = CUSTOMER_THREAD) -> str:
    answer = await web.chat_postMessage(channel=SHARED, thread_ts=thread, text=text, metadata=outbox(outbox_id))
    return str(answer["ts"])


# ---- Slack: messages kept, with their metadata ----


async def test_a_post_with_metadata_is_kept_and_answered_as_slack_does(slack: tuple[FakeSlack, str],
                                                                       web: AsyncWebClient):
    fake, _ = slack
    answer = await web.chat_postMessage(channel=SHARED, thread_ts=CUSTOMER_THREAD, text="Here is how.",
                                        metadata=outbox(41))
    sent = fake.calls[-1].args
    assert sent["metadata"] == {"event_type": "baton_outbox", "event_payload": {"outbox_id": 41}}  # a JSON object
    message = answer["message"]
    assert message["metadata"] == outbox(41) and message["ts"] == answer["ts"]
    assert (message["user"], message["bot_id"], message["thread_ts"]) == (BOT_USER, BOT_ID, CUSTOMER_THREAD)
    assert [m["ts"] for m in fake.messages_in(SHARED, CUSTOMER_THREAD)] == [answer["ts"]]
    assert fake.messages_in(SHARED) == []  # a reply is not top-level
    assert fake.count_with_metadata(41) == 1 and fake.count_with_metadata(42) == 0

    await web.chat_postMessage(channel=INTERNAL, text="card", metadata=Metadata(OUTBOX_EVENT, {"outbox_id": 42}))
    assert fake.count_with_metadata(42, INTERNAL) == 1 and fake.count_with_metadata(42, SHARED) == 0
    assert [m["text"] for m in fake.messages_in(INTERNAL)] == ["card"]


async def test_metadata_that_is_not_an_event_is_refused(web: AsyncWebClient):
    with pytest.raises(SlackApiError) as refused:
        await web.chat_postMessage(channel=SHARED, text="x", metadata={"outbox_id": 1})
    assert refused.value.response["error"] == "invalid_metadata_format"


async def test_replies_show_metadata_only_when_asked(slack: tuple[FakeSlack, str], web: AsyncWebClient):
    fake, _ = slack
    first = await reply(web, "one", 1)
    second = await reply(web, "two", 2)

    plain = await web.conversations_replies(channel=SHARED, ts=CUSTOMER_THREAD)
    parent, *replies = plain["messages"]
    assert parent == {"type": "message", "ts": CUSTOMER_THREAD, "text": "", "thread_ts": CUSTOMER_THREAD,
                      "reply_count": 2, "reply_users_count": 1, "latest_reply": second, "reply_users": [BOT_USER],
                      "is_locked": False, "subscribed": False}
    assert [m["ts"] for m in replies] == [first, second] and not any("metadata" in m for m in replies)
    assert plain["has_more"] is False and "response_metadata" not in plain

    full = await web.conversations_replies(channel=SHARED, ts=CUSTOMER_THREAD, include_all_metadata=True)
    assert [m.get("metadata") for m in full["messages"]] == [None, outbox(1), outbox(2)]
    assert fake.calls[-1].args["include_all_metadata"] == "1"  # slack-sdk sends booleans as 0/1 in a query

    by_reply = await web.conversations_replies(channel=SHARED, ts=second)  # a reply's ts gives its whole thread
    assert [m["ts"] for m in by_reply["messages"]] == [CUSTOMER_THREAD, first, second]


async def test_a_customers_message_made_known_is_the_parent_of_its_thread(slack: tuple[FakeSlack, str],
                                                                          web: AsyncWebClient):
    fake, _ = slack
    asked = message_event("U0DANA", "How do I connect my Outlook calendar?", ts=f"{int(time.time())}.000100")
    fake.add_message(SHARED, asked)
    answer = await web.chat_postMessage(channel=SHARED, thread_ts=asked["ts"], text="Like this.")
    assert answer["message"]["parent_user_id"] == "U0DANA"
    parent, mine = (await web.conversations_replies(channel=SHARED, ts=asked["ts"]))["messages"]
    assert (parent["user"], parent["text"], parent["reply_count"]) == ("U0DANA", asked["text"], 1)
    assert "channel" not in parent and mine["ts"] == answer["ts"]
    assert [m["ts"] for m in (await web.conversations_history(channel=SHARED))["messages"]] == [asked["ts"]]


async def test_replies_are_paged_with_the_parent_on_every_page(slack: tuple[FakeSlack, str], web: AsyncWebClient):
    posted = [await reply(web, f"part {n}", n) for n in range(5)]

    pages: list[list[str]] = []
    async for page in await web.conversations_replies(channel=SHARED, ts=CUSTOMER_THREAD, limit=3):
        pages.append([m["ts"] for m in page["messages"]])
    assert pages == [[CUSTOMER_THREAD, *posted[0:2]], [CUSTOMER_THREAD, *posted[2:4]], [CUSTOMER_THREAD, posted[4]]]

    first = await web.conversations_replies(channel=SHARED, ts=CUSTOMER_THREAD, limit=3)
    assert first["has_more"] is True and first["response_metadata"]["next_cursor"]

    since = await web.conversations_replies(channel=SHARED, ts=CUSTOMER_THREAD, oldest=posted[2])
    assert [m["ts"] for m in since["messages"]] == [CUSTOMER_THREAD, *posted[3:]]  # the parent whatever oldest says
    window = await web.conversations_replies(channel=SHARED, ts=CUSTOMER_THREAD, oldest=posted[1],
                                             latest=posted[3], inclusive=True)
    assert [m["ts"] for m in window["messages"]] == [CUSTOMER_THREAD, *posted[1:4]]

    slack[0].page_limits["conversations.replies"] = 15  # an app distributed outside the Marketplace
    capped = await web.conversations_replies(channel=SHARED, ts=CUSTOMER_THREAD, limit=2)
    assert len(capped["messages"]) == 2


async def test_replies_and_history_refuse_what_slack_refuses(web: AsyncWebClient):
    for call, error in ((web.conversations_replies(channel="C0NOWHERE", ts=CUSTOMER_THREAD), "channel_not_found"),
                        (web.conversations_replies(channel=SHARED, ts=CUSTOMER_THREAD, cursor="bad!"),
                         "invalid_cursor"),
                        (web.conversations_history(channel=SHARED, oldest="yesterday"), "invalid_ts_oldest")):
        with pytest.raises(SlackApiError) as refused:
            await call
        assert refused.value.response["error"] == error


async def test_history_has_top_level_messages_newest_first(slack: tuple[FakeSlack, str], web: AsyncWebClient):
    fake, _ = slack
    cards = [str((await web.chat_postMessage(channel=INTERNAL, text=f"card {n}", metadata=outbox(n)))["ts"])
             for n in range(4)]
    await web.chat_postMessage(channel=INTERNAL, thread_ts=cards[0], text="Claimed by Sam", metadata=outbox(9))
    await web.chat_update(channel=INTERNAL, ts=cards[1], text="card 1, resolved")

    history = await web.conversations_history(channel=INTERNAL)
    assert [m["ts"] for m in history["messages"]] == cards[::-1]  # the thread reply is not in history
    assert not any("metadata" in m for m in history["messages"])
    assert history["messages"][2]["text"] == "card 1, resolved" and "edited" in history["messages"][2]
    assert history["messages"][3]["reply_count"] == 1 and history["messages"][3]["thread_ts"] == cards[0]
    assert history["has_more"] is False and history["pin_count"] == 0

    with_metadata = await web.conversations_history(channel=INTERNAL, include_all_metadata=True, limit=3)
    assert [m["metadata"]["event_payload"]["outbox_id"] for m in with_metadata["messages"]] == [3, 2, 1]
    assert with_metadata["has_more"] is True
    rest = await web.conversations_history(channel=INTERNAL, include_all_metadata=True, limit=3,
                                           cursor=with_metadata["response_metadata"]["next_cursor"])
    assert [m["ts"] for m in rest["messages"]] == [cards[0]] and rest["has_more"] is False

    since = await web.conversations_history(channel=INTERNAL, oldest=cards[1])
    assert [m["ts"] for m in since["messages"]] == [cards[3], cards[2]]
    now = time.time()  # a ts is the time of the post, as Slack's are: "since the row was written" works
    assert len((await web.conversations_history(channel=INTERNAL, oldest=f"{now - 60:.6f}"))["messages"]) == 4
    assert (await web.conversations_history(channel=INTERNAL, oldest=f"{now + 60:.6f}"))["messages"] == []
    assert fake.count_with_metadata(9) == 1


# ---- Slack: the answer lost after the post ----


async def test_a_post_answered_500_exists_and_a_look_finds_it(slack: tuple[FakeSlack, str], web: AsyncWebClient):
    fake, _ = slack
    fake.fail_after("chat.postMessage", 500)
    with pytest.raises(SlackApiError) as lost:
        await reply(web, "Here is how.", 7)
    assert lost.value.response.status_code == 500

    assert fake.count_with_metadata(7) == 1
    assert fake.calls[-1].status == 500 and fake.calls[-1].applied
    assert fake.count("chat.postMessage", SHARED) == 1 and len(fake.posts(SHARED)) == 1
    thread = await web.conversations_replies(channel=SHARED, ts=CUSTOMER_THREAD, include_all_metadata=True)
    assert [m.get("metadata") for m in thread["messages"][1:]] == [outbox(7)]  # a courier looks before posting again

    await reply(web, "Next one.", 8)  # only the next call was failed
    assert fake.calls[-1].status == 200 and fake.count_with_metadata(8) == 1


async def test_a_closed_connection_after_the_post_is_reposted_by_slack_sdks_default_retry(
        slack: tuple[FakeSlack, str], web: AsyncWebClient):
    fake, url = slack
    fake.fail_after("chat.postMessage", None)
    with pytest.raises(aiohttp.ServerDisconnectedError):  # with retry_handlers=[]: the courier hears of it
        await reply(web, "Here is how.", 11)
    assert fake.count_with_metadata(11) == 1 and fake.calls[-1].status == 0 and fake.calls[-1].applied

    fake.fail_after("chat.postMessage", None)
    async with aiohttp.ClientSession() as session:  # slack-sdk's default: one silent retry on a lost connection
        default = AsyncWebClient(token=TOKEN, base_url=url, session=session)
        await reply(default, "Here is how.", 12)
    assert fake.count_with_metadata(12) == 2  # posted twice, and the caller never knew


async def test_a_post_never_answered_times_out_and_exists(slack: tuple[FakeSlack, str]):
    fake, url = slack
    fake.hang_after("chat.postMessage")
    # With a session of its own, AsyncWebClient's ``timeout`` is not used: the session's timeout is the one.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3)) as session:
        impatient = AsyncWebClient(token=TOKEN, base_url=url, session=session, retry_handlers=[])
        with pytest.raises(asyncio.TimeoutError):
            await reply(impatient, "Here is how.", 21)
        assert fake.count_with_metadata(21) == 1
        fake.release()
        await reply(impatient, "Next one.", 22)  # hangs only as often as asked
    assert fake.count_with_metadata(22) == 1


async def test_replies_and_history_can_be_rate_limited_as_slack_does(slack: tuple[FakeSlack, str],
                                                                     web: AsyncWebClient):
    fake, _ = slack
    clock = Clock()
    fake.clock = clock
    fake.rate_limit("conversations.replies", 2, per=60)
    await reply(web, "one", 1)
    for _ in range(2):
        await web.conversations_replies(channel=SHARED, ts=CUSTOMER_THREAD)
    clock.now += 15
    with pytest.raises(SlackApiError) as limited:
        await web.conversations_replies(channel=SHARED, ts=CUSTOMER_THREAD)
    assert limited.value.response.status_code == 429 and limited.value.response["error"] == "ratelimited"
    assert limited.value.response.headers["Retry-After"] == "45"
    await web.conversations_history(channel=SHARED)  # each method has its own limit

    clock.now += 45
    assert (await web.conversations_replies(channel=SHARED, ts=CUSTOMER_THREAD))["ok"]


# ---- Discord: nonce and enforce_nonce ----


@pytest.fixture
async def client(fake_discord: FakeDiscord, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[discord.Client]:
    """discord.py's REST side, logged in against the fake (no gateway)."""
    assert fake_discord.server is not None
    monkeypatch.setattr(Route, "BASE", str(fake_discord.server.make_url("/api/v10")))
    client = discord.Client(intents=discord.Intents.none())
    await client.login(DISCORD_TOKEN)
    yield client
    await client.close()


async def test_discord_py_sends_every_message_with_an_enforced_nonce(fake_discord: FakeDiscord,
                                                                     client: discord.Client):
    channel = client.get_partial_messageable(SUPPORT)
    sent = await channel.send("Here is how.", nonce="baton-41")
    assert fake_discord.sent[-1].body["nonce"] == "baton-41" and fake_discord.sent[-1].body["enforce_nonce"] is True
    assert sent.nonce == "baton-41"
    await channel.send("No nonce given")  # discord.py draws a random one and enforces it
    body = fake_discord.sent[-1].body
    assert body["enforce_nonce"] is True and body["nonce"].isdigit()


async def test_the_same_nonce_answers_the_first_message(fake_discord: FakeDiscord, client: discord.Client):
    channel = client.get_partial_messageable(SUPPORT)
    first = await channel.send("Here is how.", nonce="baton-41")
    again = await channel.send("Here is how.", nonce="baton-41")
    assert again.id == first.id and [s.id for s in fake_discord.replayed] == [first.id]
    assert len(fake_discord.with_nonce("baton-41")) == 1 and len(fake_discord.messages_in(SUPPORT)) == 1

    other = await channel.send("Part two.", nonce="baton-41.2")
    elsewhere = await client.get_partial_messageable(LOUNGE).send("Here is how.", nonce="baton-41")
    assert len({first.id, other.id, elsewhere.id}) == 3
    history = await client.http.logs_from(SUPPORT, 50)
    assert [m["id"] for m in history] == [str(other.id), str(first.id)] and not any("nonce" in m for m in history)


async def test_a_nonce_is_not_enforced_unless_asked_nor_after_its_window(fake_discord: FakeDiscord,
                                                                         client: discord.Client):
    route = Route("POST", "/channels/{channel_id}/messages", channel_id=SUPPORT)
    unenforced = [await client.http.request(route, json={"content": "hi", "nonce": "n-1"}) for _ in range(2)]
    assert unenforced[0]["id"] != unenforced[1]["id"]

    clock = Clock()
    fake_discord.clock = clock
    params = handle_message_parameters(content="Here is how.", nonce="n-2")  # what Messageable.send builds
    first = await client.http.send_message(SUPPORT, params=params)
    clock.now += fake_discord.nonce_window + 1
    later = await client.http.send_message(SUPPORT, params=params)
    assert later["id"] != first["id"] and len(fake_discord.with_nonce("n-2")) == 2


async def test_a_nonce_longer_than_discord_allows_is_refused(client: discord.Client):
    with pytest.raises(discord.HTTPException) as refused:
        await client.get_partial_messageable(SUPPORT).send("x", nonce="n" * 26)
    assert refused.value.status == 400 and refused.value.code == 50035


async def test_a_create_whose_answer_is_lost_is_found_again_by_its_nonce(fake_discord: FakeDiscord,
                                                                         client: discord.Client):
    channel = client.get_partial_messageable(SUPPORT)
    fake_discord.fail_after("/messages", 503)
    with pytest.raises(discord.DiscordServerError):
        await channel.send("Here is how.", nonce="baton-7")
    assert len(fake_discord.with_nonce("baton-7")) == 1  # created all the same

    fake_discord.fail_after("/messages", None)
    with pytest.raises(aiohttp.ServerDisconnectedError):  # discord.py does not retry a closed connection
        await channel.send("Next.", nonce="baton-8")
    assert len(fake_discord.with_nonce("baton-8")) == 1

    for nonce in ("baton-7", "baton-8"):  # the courier's retry, same nonce: the first message, nothing new
        again = await channel.send("whatever", nonce=nonce)
        assert again.id == int(fake_discord.with_nonce(nonce)[0]["id"])
    assert len(fake_discord.messages_in(SUPPORT)) == 2 and len(fake_discord.replayed) == 2


async def test_discord_pys_own_retry_of_a_500_is_answered_the_first_message(fake_discord: FakeDiscord,
                                                                            client: discord.Client):
    """discord.py retries a 500 by itself after 1 s with the same nonce: one message, and the caller gets it."""
    fake_discord.fail_after("/messages", 500)
    sent = await client.get_partial_messageable(SUPPORT).send("Here is how.", nonce="baton-9")
    assert [int(m["id"]) for m in fake_discord.with_nonce("baton-9")] == [sent.id]
    assert [s.id for s in fake_discord.replayed] == [sent.id]
    assert [m["author"]["id"] for m in fake_discord.messages_in(SUPPORT)] == [str(BOT)]


async def test_a_thread_whose_answer_is_lost_exists_and_a_retry_is_told_so(fake_discord: FakeDiscord,
                                                                          client: discord.Client):
    asked = await fake_discord.say(DANA, "How do I connect my Outlook calendar?", live=False)
    fake_discord.fail_after("/threads", 503)
    with pytest.raises(discord.DiscordServerError):
        await client.http.start_thread_with_message(SUPPORT, asked["id"], name="Dana · support",
                                                    auto_archive_duration=1440)
    assert fake_discord.threads_started == [int(asked["id"])]
    with pytest.raises(discord.HTTPException) as again:
        await client.http.start_thread_with_message(SUPPORT, asked["id"], name="Dana · support",
                                                    auto_archive_duration=1440)
    assert (again.value.status, again.value.code) == (400, 160004)  # "already created": the thread is there
