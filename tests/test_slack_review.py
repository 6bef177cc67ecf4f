"""The QA review queue in Slack (#15): sampled decisions are posted in the review channel with a one-click
tag menu; a tag redraws the post, a tag that blames the help center mentions its owners in the post's thread
with the article, a harmful tag demotes the intent at once.

The real Bolt app over HTTP with signed payloads, against the local Web API fake, on SQLite and
PostgreSQL. Each scenario asserts what the review channel shows and what the store holds.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_fake import GROUPS, INTERNAL, LEADS, SHARED, TOKEN, FakeSlack, Harness

from adapters import slack_blocks as blocks
from adapters.slack import NOT_STAFF, SlackConfig, SlackConfigError
from bot import autonomy
from bot.engine import Engine
from bot.knowledge import KnowledgeBase
from bot.policy import Policy
from bot.service import Service
from bot.settings import Settings
from bot.store import Store

REVIEW = "C0REVIEW"
CALENDAR = "How do I connect my Outlook calendar?"
ARTICLE = "https://help.notewise.example/articles/connect-calendars"
REFUND = "This is ridiculous. You charged us twice for November and I want a refund NOW."


def reviewing(policy: Policy, **rules: object) -> Policy:
    """The shipped policy with the review queue on (as tests/test_autonomy.py)."""
    return policy.model_copy(update={"review": policy.review.model_copy(update={"enabled": True, **rules})})


@pytest.fixture
def review_policy(policy: Policy) -> Policy:
    return reviewing(policy, auto_share=1.0, knowledge_owner="support")


async def harness(fake: tuple[FakeSlack, str], store: Store, policy: Policy, knowledge: KnowledgeBase,
                  review_channel: str | None = REVIEW) -> AsyncIterator[Harness]:
    server, url = fake
    server.channels[REVIEW] = {"id": REVIEW, "name": "support-qa", "is_ext_shared": False, "is_shared": False}
    running = Harness(Service(Engine(policy, knowledge), store), server, url)
    running.adapter.config = dataclasses.replace(running.adapter.config, review_channel=review_channel)
    async with running:
        yield running


@pytest.fixture
async def slack(fake: tuple[FakeSlack, str], store: Store, review_policy: Policy,
                knowledge: KnowledgeBase) -> AsyncIterator[Harness]:
    async for running in harness(fake, store, review_policy, knowledge):
        yield running


# ---- helpers ----


def text_of(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def review_posts(slack: Harness, channel: str = REVIEW) -> list[dict[str, Any]]:
    """The review posts as Slack shows them now (top-level messages with a QA head), oldest first."""
    return [m for m in slack.fake.messages_in(channel) if str(m.get("text", "")).startswith("QA review: ")]


def menu(post: dict[str, Any]) -> dict[str, Any] | None:
    return next((e for b in post["blocks"] if b["type"] == "actions" for e in b["elements"]
                 if e["action_id"] == blocks.TAG), None)


def tag_payload(slack: Harness, user: str, post: dict[str, Any], value: str | None,
                channel: str = REVIEW) -> dict[str, Any]:
    """A ``block_actions`` payload of a review post's tag menu, as Slack sends it."""
    payload = slack.click_payload(user, blocks.TAG, "", str(post["ts"]))
    payload["container"]["channel_id"] = channel
    payload["message"] = {**payload["message"], "text": post["text"], "blocks": post["blocks"]}
    payload["channel"] = {"id": channel, "name": "support-qa"}
    action: dict[str, Any] = {"type": "static_select", "action_id": blocks.TAG, "block_id": "baton_review_actions",
                              "placeholder": {"type": "plain_text", "text": "Tag this"},
                              "action_ts": f"{time.time():.6f}"}
    if value is not None:
        action["selected_option"] = {"text": {"type": "plain_text", "text": value.partition("|")[2]}, "value": value}
    payload["actions"] = [action]
    return payload


async def tag(slack: Harness, user: str, post: dict[str, Any], name: str, channel: str = REVIEW) -> None:
    option = menu(post)
    assert option is not None, "the post has no tag menu"
    [value] = [o["value"] for o in option["options"] if o["text"]["text"] == name]
    assert await slack.interact(tag_payload(slack, user, post, value, channel)) == 200
    await slack.settle()


def now(slack: Harness, post: dict[str, Any], channel: str = REVIEW) -> dict[str, Any]:
    [message] = [m for m in slack.fake.messages_in(channel) if m["ts"] == post["ts"]]
    return message


def ephemerals(slack: Harness, user: str) -> list[str]:
    return [c.args["text"] for c in slack.fake.ok("chat.postEphemeral") if c.args["user"] == user]


def customer_posts(slack: Harness, thread: str) -> list[str]:
    return [p["text"] for p in slack.fake.posts(SHARED) if p.get("thread_ts") == thread]


async def answered(slack: Harness, text: str = CALENDAR, channel: str = REVIEW) -> tuple[str, dict[str, Any]]:
    """A question answered on its own; its thread, and its review post as first posted (a copy: the fake
    redraws its own on chat.update)."""
    ts = await slack.say("U0DANA", text)
    await slack.settle()
    return ts, copy.deepcopy(review_posts(slack, channel)[-1])


# ---- the post ----


async def test_an_auto_answer_is_posted_for_review_with_the_tag_menu(slack: Harness, store: Store,
                                                                    review_policy: Policy):
    ts, post = await answered(slack)
    assert len(customer_posts(slack, ts)) == 1 and ARTICLE in customer_posts(slack, ts)[0]  # sent on its own
    [item] = await store.reviews_of(reason="auto_answer")
    assert len(review_posts(slack)) == 1 and review_posts(slack, INTERNAL) == []
    shown = text_of(post["blocks"])
    assert "Sent on its own" in shown and "intent how_to" in shown
    assert f">Customer: {CALENDAR}" in shown and "Baton: " in shown  # what was asked, what was sent
    thread_link = f"https://notewise.example/archives/{SHARED}/p{ts.replace('.', '')}"
    assert f"<{thread_link}|open in Slack>" in shown and f"<{ARTICLE}|{ARTICLE}>" in shown
    assert "Handoff card" not in shown  # an auto answer has no card
    options = menu(post)
    assert options is not None and options["type"] == "static_select"
    assert [o["text"]["text"] for o in options["options"]] == review_policy.review.tags
    assert [o["value"] for o in options["options"]] == [f"{item['id']}|{t}" for t in review_policy.review.tags]
    metadata = post["metadata"]  # delivered once, like every post: the outbox id rides along
    assert metadata["event_type"] == "baton_outbox" and slack.fake.count_with_metadata(
        metadata["event_payload"]["outbox_id"]) == 1


async def test_the_customers_words_in_a_review_post_are_escaped(slack: Harness):
    # what Slack sends when a customer types "<!here>" literally, then a bare broadcast and a real mention
    _ts, post = await answered(slack, "How do I connect my Outlook calendar? &lt;!here&gt; @channel <@U0SAM>")
    said = post["blocks"][1]["text"]
    assert said["verbatim"] is True and said["text"].startswith(">Customer: How do I connect")
    assert "&lt;!here&gt;" in said["text"] and "@\u2060channel" in said["text"] and "@Sam Agent" in said["text"]
    assert "<!" not in said["text"] and "<@" not in said["text"]
    assert all(b["text"]["verbatim"] for b in post["blocks"] if b["type"] == "section")


async def test_tagging_outdated_article_redraws_the_post_and_tells_the_help_center_owners(slack: Harness,
                                                                                          store: Store):
    _ts, post = await answered(slack)
    await tag(slack, "U0SAM", post, "outdated article")
    assert ephemerals(slack, "U0SAM") == []
    [item] = await store.reviews_of(reason="auto_answer")
    assert item["tag"] == "outdated article" and item["tagged_by"] == "U0SAM"
    redrawn = now(slack, post)
    assert menu(redrawn) is None and "Tagged *outdated article* by <@U0SAM>" in text_of(redrawn["blocks"])
    assert f">Customer: {CALENDAR}" in text_of(redrawn["blocks"])  # the rest of the post stays
    [told] = slack.fake.messages_in(REVIEW, str(post["ts"]))  # in the post's thread
    assert told["text"].startswith(f"<!subteam^{GROUPS['support']}> the help center needs a look: <{ARTICLE}|")
    assert "by <@U0SAM>" in told["text"]


async def test_a_second_tag_is_refused_and_the_first_stands(slack: Harness, store: Store):
    _ts, post = await answered(slack)
    await tag(slack, "U0SAM", post, "correct")
    await tag(slack, "U0KIM", post, "wrong tone")  # from a copy of the post drawn before the first tag
    assert ephemerals(slack, "U0KIM") == ["Nothing was done: this item was already tagged"]
    [item] = await store.reviews_of(reason="auto_answer")
    assert item["tag"] == "correct" and item["tagged_by"] == "U0SAM"
    assert "Tagged *correct* by <@U0SAM>" in text_of(now(slack, post)["blocks"])
    assert len(slack.fake.ok("chat.update")) == 1
    assert slack.fake.messages_in(REVIEW, str(post["ts"])) == []  # "correct" blames no article


async def test_should_have_escalated_demotes_the_intent_and_the_next_answer_waits(slack: Harness, store: Store,
                                                                                  review_policy: Policy):
    _ts, post = await answered(slack)
    assert (await autonomy.modes(store, review_policy))["how_to"] == "auto"
    await tag(slack, "U0SAM", post, "should have escalated")
    assert ephemerals(slack, "U0SAM") == []
    assert (await autonomy.modes(store, review_policy))["how_to"] == "draft"  # demoted at once
    ts = await slack.say("U0DANA", CALENDAR)  # a new thread
    await slack.settle()
    assert customer_posts(slack, ts) == [review_policy.notices.checking[0]]  # a teammate checks the answer
    cards = [p for p in slack.fake.posts(INTERNAL) if not p.get("thread_ts")]
    assert len(cards) == 1 and "Draft answer" in text_of(cards[0]["blocks"])


async def test_with_a_leads_channel_the_autonomy_notices_go_there(slack: Harness, store: Store):
    slack.adapter.config = dataclasses.replace(slack.adapter.config, leads_channel=LEADS)
    _ts, post = await answered(slack)
    await tag(slack, "U0SAM", post, "should have escalated")
    await slack.settle()
    [notice] = slack.fake.messages_in(LEADS)
    assert notice["text"].startswith("how_to is now draft (was auto)")
    assert not any("is now draft" in str(m.get("text")) for m in slack.fake.messages_in(REVIEW))


def test_the_leads_channel_is_validated(policy: Policy):
    assert SlackConfig.from_settings(_settings(), policy, environ={}).leads == INTERNAL  # the review channel's
    assert SlackConfig.from_settings(_settings(BATON_LEADS_CHANNEL=LEADS), policy, environ={}).leads == LEADS
    with pytest.raises(SlackConfigError, match="BATON_LEADS_CHANNEL: 'leads' is not a channel ID"):
        SlackConfig.from_settings(_settings(BATON_LEADS_CHANNEL="leads"), policy, environ={})
    with pytest.raises(SlackConfigError, match=f"BATON_LEADS_CHANNEL {SHARED} is also a customer channel"):
        SlackConfig.from_settings(_settings(BATON_LEADS_CHANNEL=SHARED), policy, environ={})


@pytest.mark.parametrize("value", ["{id}|correct", None])
async def test_a_tag_from_outside_the_workspace_is_refused(slack: Harness, store: Store, value: str | None):
    _ts, post = await answered(slack)
    [item] = await store.reviews_of(reason="auto_answer")
    chosen = value.format(id=item["id"]) if value else None
    assert await slack.interact(tag_payload(slack, "U0ALEX", post, chosen)) == 200
    await slack.settle()
    assert ephemerals(slack, "U0ALEX") == [NOT_STAFF]
    [item] = await store.reviews_of(reason="auto_answer")
    assert item["tag"] is None and slack.fake.ok("chat.update") == [] and menu(now(slack, post)) is not None


async def test_a_forged_or_empty_tag_is_refused_with_a_reason(slack: Harness, store: Store):
    _ts, post = await answered(slack)
    [item] = await store.reviews_of(reason="auto_answer")
    for value in (f"{item['id']}|great job", "999999|correct", "99999999999999999999|correct", "abc|correct", None):
        assert await slack.interact(tag_payload(slack, "U0SAM", post, value)) == 200
    await slack.settle()
    said = ephemerals(slack, "U0SAM")
    assert len(said) == 5 and "'great job' is not one of the tags" in said[0]
    assert said[1] == "Nothing was done: this review item is not in Baton's records"
    assert said[2] == said[3] == "This review post is not in Baton's records."
    assert said[4] == "Choose a tag from the menu."
    [item] = await store.reviews_of(reason="auto_answer")
    assert item["tag"] is None and slack.fake.ok("chat.update") == []


async def test_a_handoff_goes_to_review_with_a_link_to_its_card(slack: Harness, store: Store):
    ts = await slack.say("U0DANA", REFUND)
    await slack.settle()
    [card] = [p for p in slack.fake.posts(INTERNAL) if not p.get("thread_ts")]
    [post] = [p for p in review_posts(slack) if "Handed to a person" in text_of(p["blocks"])]
    shown = text_of(post["blocks"])
    card_link = f"https://notewise.example/archives/{INTERNAL}/p{str(card['posted_ts']).replace('.', '')}"
    assert f"*Handoff card:* <{card_link}|open the card>" in shown and f"archives/{SHARED}/p" in shown
    assert "Handed to billing" in shown
    [item] = await store.reviews_of(reason="handoff")
    await tag(slack, "U0KIM", post, "unnecessary escalation")
    assert (await store.reviews_of(reason="handoff"))[0]["tag"] == "unnecessary escalation"
    redrawn = text_of(now(slack, post)["blocks"])
    assert "Tagged *unnecessary escalation* by <@U0KIM>" in redrawn and card_link in redrawn
    assert item["conversation_id"] and customer_posts(slack, ts)  # the customer was told a person takes over


async def test_a_review_post_whose_answer_was_lost_is_found_not_posted_twice(slack: Harness):
    slack.fake.fail_after("chat.postMessage", 500, times=2)  # the answer, then the review post: both lost
    ts = await slack.say("U0DANA", CALENDAR)
    await slack.settle()
    assert len(customer_posts(slack, ts)) == 1
    [post] = review_posts(slack)
    outbox_id = post["metadata"]["event_payload"]["outbox_id"]
    assert slack.fake.count_with_metadata(outbox_id) == 1
    assert slack.fake.ok("conversations.history")  # looked for in the review channel first


async def test_without_a_review_channel_the_internal_channel_has_the_queue(fake: tuple[FakeSlack, str], store: Store,
                                                                         review_policy: Policy,
                                                                         knowledge: KnowledgeBase):
    async for slack in harness(fake, store, review_policy, knowledge, review_channel=None):
        _ts, post = await answered(slack, channel=INTERNAL)
        assert review_posts(slack) == [] and len(review_posts(slack, INTERNAL)) == 1 and menu(post) is not None
        await tag(slack, "U0SAM", post, "missing article", INTERNAL)
        assert "Tagged *missing article*" in text_of(now(slack, post, INTERNAL)["blocks"])
        [told] = slack.fake.messages_in(INTERNAL, str(post["ts"]))
        assert told["text"].startswith(f"<!subteam^{GROUPS['support']}> the help center needs a look")


# ---- configuration ----


def _settings(**env: str) -> Settings:
    base = {"SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": "s", "BATON_CUSTOMER_CHANNELS": SHARED,
            "BATON_INTERNAL_CHANNEL": INTERNAL, **env}
    return Settings(**{k: v for k, v in base.items() if v}, _env_file=None)  # type: ignore[arg-type]


def test_the_review_channel_is_validated_and_falls_back_to_the_internal_channel(policy: Policy):
    assert SlackConfig.from_settings(_settings(), policy, environ={}).review == INTERNAL
    config = SlackConfig.from_settings(_settings(BATON_REVIEW_CHANNEL=REVIEW), policy, environ={})
    assert config.review == REVIEW and REVIEW in repr(config)
    with pytest.raises(SlackConfigError, match="BATON_REVIEW_CHANNEL: 'support-qa' is not a channel ID"):
        SlackConfig.from_settings(_settings(BATON_REVIEW_CHANNEL="support-qa"), policy, environ={})
    with pytest.raises(SlackConfigError, match=f"BATON_REVIEW_CHANNEL {SHARED} is also a customer channel"):
        SlackConfig.from_settings(_settings(BATON_REVIEW_CHANNEL=SHARED), policy, environ={})


async def test_a_review_channel_shared_with_another_organisation_is_refused_at_start(
        fake: tuple[FakeSlack, str], store: Store, review_policy: Policy, knowledge: KnowledgeBase):
    server, url = fake
    server.channels[REVIEW] = {"id": REVIEW, "name": "support-qa", "is_ext_shared": True, "is_shared": True}
    running = Harness(Service(Engine(review_policy, knowledge), store), server, url)
    running.adapter.config = dataclasses.replace(running.adapter.config, review_channel=REVIEW)
    with pytest.raises(SlackConfigError, match="BATON_REVIEW_CHANNEL C0REVIEW is shared with another organisation"):
        await running.adapter.setup()
    running.adapter.config = dataclasses.replace(running.adapter.config, review_channel="C0MISSING")
    with pytest.raises(SlackConfigError, match="BATON_REVIEW_CHANNEL: Slack cannot show channel C0MISSING"):
        await running.adapter.setup()
    server.channels[LEADS] = {"id": LEADS, "name": "support-leads", "is_ext_shared": True, "is_shared": True}
    running.adapter.config = dataclasses.replace(running.adapter.config, review_channel=None, leads_channel=LEADS)
    with pytest.raises(SlackConfigError, match="BATON_LEADS_CHANNEL C0LEADS is shared with another organisation"):
        await running.adapter.setup()
    await running.adapter.stop()


# ---- a handoff a person says was not needed ----


async def test_a_handoff_marked_not_needed_counts_against_escalation_accuracy(slack: Harness, store: Store,
                                                                               policy: Policy):
    from datetime import UTC, datetime, timedelta

    from bot import reports

    ts = await slack.say("U0ALEX", "You charged us twice for November, I want a refund")
    await slack.settle()
    [card] = [m for m in slack.fake.messages_in(INTERNAL) if not m.get("thread_ts")]
    conversation = await store.find_conversation("slack", "T0VENDOR", SHARED, ts)
    assert conversation is not None
    buttons = {e["action_id"]: e for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]}
    assert buttons[blocks.UNNEEDED]["text"]["text"] == "Not needed"

    assert await slack.click("U0ALEX", blocks.UNNEEDED, conversation.id, card["ts"]) == 200  # a customer: refused
    assert await slack.click("U0SAM", blocks.UNNEEDED, conversation.id, card["ts"]) == 200
    assert await slack.click("U0KIM", blocks.UNNEEDED, conversation.id, card["ts"]) == 200  # once is enough
    await slack.settle()
    said = {c.args["user"]: c.args["text"] for c in slack.fake.ok("chat.postEphemeral")}
    assert said["U0ALEX"] == NOT_STAFF
    assert said["U0SAM"].startswith("Noted: this handoff was not needed")
    assert "already marked as not needed" in said["U0KIM"]
    assert any("marked this handoff as not needed" in p["text"] for p in slack.fake.posts(INTERNAL)
               if p.get("thread_ts") == card["ts"])
    [item] = await store.reviews_of(reason="unneeded")
    assert (item["tag"], item["tagged_by"], item["intent"]) == ("unnecessary escalation", "U0SAM", conversation.intent)

    now = datetime.now(UTC)
    report = await reports.build(store, policy, now - timedelta(days=1), now + timedelta(days=1))
    assert report.to_json()["kpis"]["escalation_accuracy"] == 0.0
    assert [r.id for r in report.drill("escalation_accuracy")] == [conversation.id]
