"""Nothing a customer types can act through the bot on Slack: broadcast and mention markup in every
customer-controlled field Baton echoes (meeting name, display name, message text, file name) never
notifies anyone, in the shared channel or in the internal one; and the rendering of Slack's markup.

The real Bolt app over HTTP, signed events, the real Web API client against the local fake.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from slack_fake import CUSTOMER_TEAM, GROUPS, INTERNAL, PEOPLE, SHARED, Harness
from test_slack import START, in_thread

from adapters import slack_blocks as blocks
from adapters.slack_markup import Names, render, rich_text, wanted
from bot.guard import Guard
from bot.model import AskDetails, Reply, StaffReply
from bot.policy import Policy

# Anything Slack would turn into a notification in a posted message (raw markup, or a bare broadcast
# word that a block's mrkdwn or name linking would parse).
NOTIFIES = re.compile(r"<!(?:here|channel|everyone)[^>]*>|<!subteam\^([A-Z0-9]+)[^>]*>|<@([A-Z0-9]+)(?:\|[^>]*)?>"
                      r"|(?<![\w@])@(?:everyone|here|channel)\b", re.I)
STAFF = {user for user, person in PEOPLE.items() if person["team_id"] == "T0VENDOR"}

# As Slack sends them: what a customer types is HTML-escaped (&lt;!channel&gt;); what the composer turned
# into a real broadcast or mention is markup (<!channel>).
INJECTIONS = ["<!channel>", "&lt;!channel&gt;", "<!here|here>", "&lt;!here&gt;", "<!everyone>", "<@U0SAM>",
              "&lt;@U0SAM&gt;", "<!subteam^S0SUPPORT|@support>", "&lt;!subteam^S0SUPPORT&gt;", "@channel", "@here"]


def pings(post: dict) -> list[str]:
    """What in a post would notify someone who was not meant to be: in the shared channel, anything at
    all; in the internal channel, anything but Baton's own mentions (a route's group, a staff member)."""
    shown = json.dumps({k: post.get(k) for k in ("text", "blocks", "attachments")}, ensure_ascii=False)
    found = []
    for match in NOTIFIES.finditer(shown):
        group, user = match.group(1), match.group(2)
        if post["channel"] == INTERNAL and (group in GROUPS.values() or user in STAFF):
            continue
        found.append(match.group(0))
    return found


def assert_nobody_notified(slack: Harness) -> None:
    posts = slack.fake.posts()
    assert posts, "the bot posted nothing: the scenario did not run"
    offending = {p["text"][:80]: pings(p) for p in posts if pings(p)}
    assert offending == {}
    for call in slack.fake.calls:  # and no post asked Slack to link names or unfurl a customer's link
        if call.method == "chat.postMessage":
            assert str(call.args.get("link_names", "0")).lower() in ("0", "false")
            assert str(call.args.get("unfurl_links")).lower() in ("0", "false")
            assert str(call.args.get("unfurl_media")).lower() in ("0", "false")


@pytest.mark.parametrize("injection", INJECTIONS)
async def test_a_meeting_name_with_broadcast_markup_is_never_read_back_as_a_ping(slack: Harness, injection: str):
    ts = await slack.say("U0DANA", "Hi, the notetaker never joined our call and there's no recording", at=START)
    await slack.say("U0DANA", "It was at 3:30pm PST", at=START + timedelta(minutes=1), thread_ts=ts)
    await slack.say("U0DANA", f'it was "Weekly {injection} Sync", yesterday', at=START + timedelta(minutes=2),
                    thread_ts=ts)
    await slack.say("U0DANA", "yes", at=START + timedelta(minutes=3), thread_ts=ts)
    await slack.settle()
    assert len(in_thread(slack.fake.posts(SHARED), ts)) >= 3  # every message was answered
    assert_nobody_notified(slack)


@pytest.mark.parametrize("injection", INJECTIONS)
async def test_whatever_reaches_the_slack_edge_for_a_customer_is_posted_inert(slack: Harness, injection: str):
    """Behind the guard, the edge escapes all the same: a reply, a details question and a staff reply
    carrying a customer's words (as a read-back does) are posted so that nothing in them acts."""
    ts = await slack.say("U0DANA", "How do I connect my Outlook calendar?")
    await slack.settle()
    conversation = await slack.service.store.find_conversation("slack", "T0VENDOR", SHARED, ts)
    assert conversation is not None
    words = render(injection)  # what the customer's words become once read
    await slack.service._enqueue(conversation.id, [
        Reply(text=f"Weekly {words} Sync, Thu 19 Nov: is that right?"),
        AskDetails(text=f"Which {words} meeting?", fields=("meeting_name",)),
        StaffReply(text=f"Looking at {words} now", author_id="U0SAM", author_name="Sam")],
        source=f"test:{injection}")
    await slack.settle()
    posted = in_thread(slack.fake.posts(SHARED), ts)
    assert len(posted) == 4 and "Weekly" in posted[1]["text"]
    assert_nobody_notified(slack)


@pytest.mark.parametrize("injection", INJECTIONS)
async def test_message_text_display_name_and_file_name_with_markup_notify_nobody(
        slack: Harness, injection: str, monkeypatch: pytest.MonkeyPatch):
    mallory = {"name": "mallory", "real_name": f"{injection} Mallory", "team_id": CUSTOMER_TEAM, "tz": "UTC"}
    monkeypatch.setitem(PEOPLE, "U0MALLORY", mallory)
    file = {"id": "F0EVIL", "name": f"{injection}.png", "title": injection, "pretty_type": "PNG", "filetype": "png"}
    ts = await slack.say("U0MALLORY", f"{injection} you charged us twice, I want a refund NOW {injection}",
                         at=START, subtype="file_share", files=[file])
    await slack.say("U0MALLORY", f"still waiting {injection}", at=START + timedelta(minutes=1), thread_ts=ts)
    await slack.settle()
    [card] = [p for p in slack.fake.posts(INTERNAL) if not p.get("thread_ts")]  # handed over: a billing dispute
    assert "Mallory" in card["text"]
    shown = json.dumps(card["blocks"])
    assert ".png" in shown or any(".png" in p["text"] for p in slack.fake.posts(INTERNAL))  # the file, by name
    assert_nobody_notified(slack)


def test_the_guard_refuses_a_customer_message_that_would_notify_anyone(policy: Policy):
    guard = Guard(policy)
    for text in ["Weekly <!channel> sync: is that right?", "hi <@U0SAM>", "<!subteam^S0X|@x> call", "@everyone",
                 "ping @here now", "<@123456789012345678> hello", "<@&123456789012345678> team"]:
        assert "notifies" in {p.kind for p in guard.check(text)}, text
    for text in ["Weekly sync: is that right?", "mail dana@here.com", "the whole channel", "see #general"]:
        assert "notifies" not in {p.kind for p in guard.check(text)}, text


def test_escape_leaves_no_markup_and_no_bare_broadcast():
    for raw in ["<!channel>", "<@U1>", "<!subteam^S1>", "@here", "@Channel please", "a & b < c > d"]:
        escaped = blocks.escape(raw)
        assert not NOTIFIES.search(escaped), escaped
        assert "<" not in escaped and ">" not in escaped
    assert blocks.escape("dana@here.com") == "dana@here.com"  # an address is not a broadcast


def test_slack_markup_reads_as_the_customer_saw_it():
    text = ("hey <@U0SAM> and <@U0BATON>, see <#C0GENERAL|general> and <#C0RANDOM>: <!here> <!channel> <!everyone> "
            "<!subteam^S0SUPPORT|@support> <mailto:dana@acme.example|dana@acme.example> <https://x.example/a|docs> "
            "<https://x.example/b> <!date^1392734382^{date_pretty}|Feb 18, 2014> 1 &lt; 2 &amp;&amp; 3 &gt; 2 "
            "&amp;lt;b&amp;gt;")
    assert wanted([text]) == ({"U0SAM", "U0BATON"}, {"C0RANDOM"})
    names = Names(users={"U0SAM": "Sam Agent", "U0BATON": None}, channels={"C0RANDOM": "random"})
    assert render(text, names) == (
        "hey @Sam Agent and , see #general and #random: @here @channel @everyone @support dana@acme.example "
        "docs (https://x.example/a) https://x.example/b Feb 18, 2014 1 < 2 && 3 > 2 &lt;b&gt;")


def test_rich_text_blocks_read_like_the_message():
    rich = [{"type": "rich_text", "elements": [
        {"type": "rich_text_section", "elements": [
            {"type": "text", "text": "Hi "}, {"type": "user", "user_id": "U0SAM"}, {"type": "text", "text": " <b> "},
            {"type": "broadcast", "range": "here"}, {"type": "text", "text": " see "},
            {"type": "link", "url": "https://x.example", "text": "this"}, {"type": "emoji", "name": "wave"}]},
        {"type": "rich_text_list", "style": "bullet", "elements": [
            {"type": "rich_text_section", "elements": [{"type": "text", "text": "one"}]},
            {"type": "rich_text_section", "elements": [{"type": "channel", "channel_id": "C0GENERAL"}]}]},
        {"type": "rich_text_quote", "elements": [{"type": "text", "text": "quoted"}]},
        {"type": "rich_text_preformatted", "elements": [{"type": "text", "text": "code"}]}]}]
    assert render(rich_text(rich), Names(users={"U0SAM": "Sam"}, channels={"C0GENERAL": "general"})) == (
        "Hi @Sam <b> @here see this (https://x.example):wave:\n• one\n• #general\n> quoted\ncode")
    assert rich_text("garbage") == "" and rich_text([{"type": "rich_text", "elements": [1, None, {}]}]) == ""
