"""Drafts on the Slack card (#15): a how-to answer in ``draft`` mode waits on the handoff card for
**Approve & send**, **Edit & send** or **Reject**; in ``shadow`` mode the card only shows what the bot
would have said; **Escalate to <next tier>** moves the handoff on.

The real Bolt app over HTTP with signed payloads, against the local Web API fake, on SQLite and
PostgreSQL. Each scenario asserts what reached the customer's thread and what the card shows.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_fake import GROUPS, INTERNAL, SHARED, FakeSlack, Harness
from test_autonomy import supervised  # the shipped policy with how-to answers in a mode

from adapters import slack_blocks as blocks
from adapters.slack import NOT_STAFF
from bot.autonomy import edit_ratio
from bot.engine import Engine
from bot.knowledge import KnowledgeBase
from bot.model import ConversationState
from bot.policy import Policy
from bot.service import Service
from bot.store import Store

CALENDAR = "How do I connect my Outlook calendar?"
ARTICLE = "https://help.notewise.example/articles/connect-calendars"


async def harness(fake: tuple[FakeSlack, str], store: Store, policy: Policy,
                  knowledge: KnowledgeBase) -> AsyncIterator[Harness]:
    server, url = fake
    async with Harness(Service(Engine(policy, knowledge), store), server, url) as running:
        yield running


@pytest.fixture
def draft_policy(policy: Policy) -> Policy:
    return supervised(policy, "draft")


@pytest.fixture
async def drafting(fake: tuple[FakeSlack, str], store: Store, draft_policy: Policy,
                   knowledge: KnowledgeBase) -> AsyncIterator[Harness]:
    async for running in harness(fake, store, draft_policy, knowledge):
        yield running


@pytest.fixture
async def shadowing(fake: tuple[FakeSlack, str], store: Store, policy: Policy,
                    knowledge: KnowledgeBase) -> AsyncIterator[Harness]:
    async for running in harness(fake, store, supervised(policy, "shadow"), knowledge):
        yield running


# ---- helpers ----


def text_of(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def customer_posts(slack: Harness, thread: str) -> list[str]:
    return [p["text"] for p in slack.fake.posts(SHARED) if p.get("thread_ts") == thread]


def card_now(slack: Harness, card_ts: str) -> list[dict[str, Any]]:
    """The card's blocks as Slack shows them now (after every chat.update)."""
    [message] = [m for m in slack.fake.messages_in(INTERNAL) if m["ts"] == card_ts]
    return list(message["blocks"])


def controls(card: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The card's buttons and menus by action id."""
    return {e["action_id"]: e for b in card if b["type"] == "actions" for e in b["elements"]}


def internal_thread(slack: Harness, card_ts: str) -> list[str]:
    return [p["text"] for p in slack.fake.posts(INTERNAL) if p.get("thread_ts") == card_ts]


def ephemerals(slack: Harness, user: str) -> list[str]:
    return [c.args["text"] for c in slack.fake.ok("chat.postEphemeral") if c.args["user"] == user]


async def drafted(slack: Harness) -> tuple[str, str, str, str]:
    """A how-to question whose answer waits on a card: (customer thread ts, conversation id, card ts, draft)."""
    ts = await slack.say("U0DANA", CALENDAR)
    await slack.settle()
    conversation = await slack.service.store.find_conversation("slack", "T0VENDOR", SHARED, ts)
    assert conversation is not None
    [card] = [p for p in slack.fake.posts(INTERNAL) if not p.get("thread_ts")]
    pending = await slack.service.store.pending_draft(conversation.id)
    assert pending is not None
    return ts, conversation.id, str(card["posted_ts"]), str(pending["text"])


def select_payload(slack: Harness, user: str, card_ts: str, option: dict[str, Any] | None) -> dict[str, Any]:
    """A ``block_actions`` payload of the Reject menu as Slack sends it (``selected_option``, no ``value``)."""
    payload = slack.click_payload(user, blocks.REJECT, "", card_ts)
    action: dict[str, Any] = {"type": "static_select", "action_id": blocks.REJECT, "block_id": "baton_card_actions",
                              "placeholder": {"type": "plain_text", "text": "Reject"},
                              "action_ts": f"{time.time():.6f}"}
    if option is not None:
        action["selected_option"] = option
    payload["actions"] = [action]
    return payload


def option(card: list[dict[str, Any]], reason: str) -> dict[str, Any]:
    [chosen] = [o for o in controls(card)[blocks.REJECT]["options"] if o["text"]["text"] == reason]
    return dict(chosen)


# ---- the card ----


async def test_a_draft_waits_on_the_card_with_approve_edit_and_reject(drafting: Harness, draft_policy: Policy):
    ts, conversation_id, card_ts, draft = await drafted(drafting)
    assert customer_posts(drafting, ts) == [draft_policy.notices.checking[0]]  # told a teammate checks it
    assert ARTICLE in draft
    card = card_now(drafting, card_ts)
    shown = text_of(card)
    assert "*Draft answer* (waiting for approval)" in shown and ARTICLE in shown
    buttons = controls(card)
    assert buttons[blocks.APPROVE]["text"]["text"] == "Approve & send"
    assert buttons[blocks.APPROVE]["style"] == "primary" and buttons[blocks.APPROVE]["value"] == conversation_id
    assert buttons[blocks.SEND]["text"]["text"] == "Edit & send"
    assert [o["text"]["text"] for o in buttons[blocks.REJECT]["options"]] == draft_policy.autonomy.reject_reasons
    assert buttons[blocks.ESCALATE]["text"]["text"] == "Escalate to leadership"  # support's next tier


async def test_approve_sends_exactly_the_draft_once_and_redraws_the_card(drafting: Harness, store: Store):
    ts, conversation_id, card_ts, draft = await drafted(drafting)
    assert await drafting.click("U0SAM", blocks.APPROVE, conversation_id, card_ts) == 200
    await drafting.settle()
    posts = customer_posts(drafting, ts)
    assert posts[1:] == [blocks.escape(draft)]  # exactly the draft (as every post, escaped), once
    [row] = await store.reviewed_drafts("how_to", window=10)
    assert row["status"] == "approved" and row["edit_ratio"] == 0.0 and row["decided_by"] == "U0SAM"
    card = card_now(drafting, card_ts)
    assert "Draft approved by <@U0SAM>" in text_of(card) and "waiting for approval" not in text_of(card)
    assert not {blocks.APPROVE, blocks.REJECT} & set(controls(card))
    assert controls(card)[blocks.SEND]["text"]["text"] == "Send to customer"
    assert ephemerals(drafting, "U0SAM") == []
    # a second click on a stale card sends nothing more and says why
    assert await drafting.click("U0SAM", blocks.APPROVE, conversation_id, card_ts) == 200
    await drafting.settle()
    assert len(customer_posts(drafting, ts)) == 2
    assert ephemerals(drafting, "U0SAM") == ["Nothing was done: someone else already decided on this draft"]


async def test_edit_and_send_posts_the_edit_and_stores_its_edit_ratio(drafting: Harness, store: Store):
    ts, conversation_id, card_ts, draft = await drafted(drafting)
    assert await drafting.click("U0KIM", blocks.SEND, conversation_id, card_ts) == 200
    [opened] = drafting.fake.ok("views.open")
    view = opened.args["view"]
    assert view["blocks"][0]["element"]["initial_value"] == draft  # the modal starts from the draft
    edited = "Hi Dana! " + draft + " Let me know if that works."
    assert await drafting.submit("U0KIM", view, edited) == 200
    await drafting.settle()
    posts = customer_posts(drafting, ts)
    assert len(posts) == 2 and posts[1] == blocks.escape(edited)
    [row] = await store.reviewed_drafts("how_to", window=10)
    assert row["status"] == "edited" and row["final_text"] == edited and row["decided_by"] == "U0KIM"
    assert row["edit_ratio"] == pytest.approx(edit_ratio(draft, edited)) and 0 < row["edit_ratio"] < 0.5


@pytest.mark.parametrize("mode", ["draft", "shadow"])
async def test_the_card_is_redrawn_when_staff_send_their_own_words(fake: tuple[FakeSlack, str], store: Store,
                                                                   policy: Policy, knowledge: KnowledgeBase,
                                                                   mode: str):
    async for slack in harness(fake, store, supervised(policy, mode), knowledge):
        ts, conversation_id, card_ts, draft = await drafted(slack)
        await slack.click("U0KIM", blocks.CLAIM, conversation_id, card_ts)  # claimed first: no redraw from the claim
        await slack.settle()
        await slack.click("U0KIM", blocks.SEND, conversation_id, card_ts)
        view = slack.fake.ok("views.open")[0].args["view"]
        assert await slack.submit("U0KIM", view, draft + " Anything else?") == 200
        await slack.settle()
        assert len(customer_posts(slack, ts)) == 2
        card = card_now(slack, card_ts)
        said = "Draft sent edited by <@U0KIM>" if mode == "draft" else "Answered by <@U0KIM>"
        assert said in text_of(card) and "waiting for approval" not in text_of(card)
        assert "would have said" not in text_of(card) and not {blocks.APPROVE, blocks.REJECT} & set(controls(card))


async def test_reject_with_a_reason_sends_nothing_and_leaves_a_normal_handoff(drafting: Harness, store: Store):
    ts, conversation_id, card_ts, _draft = await drafted(drafting)
    chosen = option(card_now(drafting, card_ts), "outdated article")
    assert await drafting.interact(select_payload(drafting, "U0SAM", card_ts, chosen)) == 200
    await drafting.settle()
    assert len(customer_posts(drafting, ts)) == 1  # only the "a teammate is checking" notice
    [row] = await store.reviewed_drafts("how_to", window=10)
    assert row["status"] == "rejected" and row["reason"] == "outdated article" and row["decided_by"] == "U0SAM"
    card = card_now(drafting, card_ts)
    assert "Draft rejected by <@U0SAM>: outdated article" in text_of(card)
    assert not {blocks.APPROVE, blocks.REJECT} & set(controls(card))
    assert {blocks.CLAIM, blocks.SEND, blocks.RESOLVE} <= set(controls(card))  # people carry on as with any handoff
    conversation = await store.get_conversation(conversation_id)
    assert conversation is not None and conversation.state is ConversationState.escalated


async def test_a_reject_without_a_known_reason_is_refused(drafting: Harness, store: Store):
    ts, conversation_id, card_ts, _draft = await drafted(drafting)
    forged = {"text": {"type": "plain_text", "text": "meh"}, "value": blocks.option_value(conversation_id, "meh")}
    assert await drafting.interact(select_payload(drafting, "U0SAM", card_ts, forged)) == 200
    assert await drafting.interact(select_payload(drafting, "U0SAM", card_ts, None)) == 200  # nothing chosen
    assert await drafting.click("U0SAM", blocks.REJECT, conversation_id, card_ts) == 200  # a button, not the menu
    await drafting.settle()
    said = ephemerals(drafting, "U0SAM")
    assert len(said) == 3 and "'meh' is not one of the reasons" in said[0]
    assert said[1].startswith("This card's conversation is not in Baton's records")
    assert said[2] == "Choose a reason from the Reject menu."
    assert await store.pending_draft(conversation_id) is not None and len(customer_posts(drafting, ts)) == 1


async def test_two_staff_approving_at_once_post_once(drafting: Harness):
    ts, conversation_id, card_ts, draft = await drafted(drafting)
    statuses = await asyncio.gather(drafting.click("U0SAM", blocks.APPROVE, conversation_id, card_ts),
                                    drafting.click("U0KIM", blocks.APPROVE, conversation_id, card_ts))
    await drafting.settle()
    assert statuses == [200, 200]
    assert customer_posts(drafting, ts)[1:] == [blocks.escape(draft)]
    told = ephemerals(drafting, "U0SAM") + ephemerals(drafting, "U0KIM")
    assert told == ["Nothing was done: someone else already decided on this draft"]


@pytest.mark.parametrize("action", [blocks.APPROVE, blocks.REJECT, blocks.ESCALATE])
async def test_a_click_from_outside_the_workspace_is_refused(drafting: Harness, store: Store, action: str):
    ts, conversation_id, card_ts, _draft = await drafted(drafting)
    if action == blocks.REJECT:
        payload = select_payload(drafting, "U0ALEX", card_ts, option(card_now(drafting, card_ts), "wrong tone"))
    else:
        payload = drafting.click_payload("U0ALEX", action, conversation_id, card_ts)
    assert await drafting.interact(payload) == 200
    await drafting.settle()
    assert ephemerals(drafting, "U0ALEX") == [NOT_STAFF]
    assert len(customer_posts(drafting, ts)) == 1 and drafting.fake.ok("chat.update") == []
    assert await store.pending_draft(conversation_id) is not None
    conversation = await store.get_conversation(conversation_id)
    assert conversation is not None and conversation.route == "support"


async def test_shadow_mode_sends_nothing_of_the_bots_and_shows_what_it_would_have_said(shadowing: Harness,
                                                                                       store: Store):
    ts = await shadowing.say("U0DANA", CALENDAR)
    await shadowing.settle()
    assert all(ARTICLE not in post for post in customer_posts(shadowing, ts))  # only the handoff notice
    assert len(customer_posts(shadowing, ts)) == 1
    [card_post] = [p for p in shadowing.fake.posts(INTERNAL) if not p.get("thread_ts")]
    card_ts = str(card_post["posted_ts"])
    card = card_now(shadowing, card_ts)
    assert "*The bot would have said*" in text_of(card) and ARTICLE in text_of(card)
    assert not {blocks.APPROVE, blocks.REJECT} & set(controls(card))
    assert controls(card)[blocks.SEND]["text"]["text"] == "Send to customer"
    conversation = await store.find_conversation("slack", "T0VENDOR", SHARED, ts)
    assert conversation is not None
    await shadowing.click("U0SAM", blocks.SEND, conversation.id, card_ts)
    view = shadowing.fake.ok("views.open")[0].args["view"]
    answer = "Go to Settings, then Calendars, and connect Outlook there."
    assert await shadowing.submit("U0SAM", view, answer) == 200
    await shadowing.settle()
    assert customer_posts(shadowing, ts)[1:] == [answer]
    [row] = await store.reviewed_drafts("how_to", window=10)
    assert row["mode"] == "shadow" and row["status"] == "answered" and row["final_text"] == answer


async def test_escalate_mentions_the_next_tier_and_redraws_the_card(drafting: Harness, store: Store):
    ts, conversation_id, card_ts, _draft = await drafted(drafting)
    await drafting.click("U0SAM", blocks.CLAIM, conversation_id, card_ts)
    assert await drafting.click("U0SAM", blocks.ESCALATE, conversation_id, card_ts) == 200
    await drafting.settle()
    [moved] = [t for t in internal_thread(drafting, card_ts) if "escalated this to" in t]
    assert moved.startswith(f"<!subteam^{GROUPS['leadership']}> <@U0SAM>")
    conversation = await store.get_conversation(conversation_id)
    assert conversation is not None and conversation.route == "leadership" and conversation.claimed_by is None
    card = card_now(drafting, card_ts)
    assert f"handoff for <!subteam^{GROUPS['leadership']}>" in text_of(card)
    assert blocks.ESCALATE not in controls(card)  # leadership is the last tier
    assert blocks.CLAIM in controls(card) and blocks.APPROVE in controls(card)  # unclaimed; the draft still waits
    assert len(customer_posts(drafting, ts)) == 1  # the customer is asked nothing again
    # a click on a copy of the card drawn before the move does nothing and says why
    assert await drafting.click("U0KIM", blocks.ESCALATE, conversation_id, card_ts) == 200
    await drafting.settle()
    assert ephemerals(drafting, "U0KIM") == ["Nothing was done: leadership is the last tier: there is no one to "
                                             "escalate to"]


async def test_no_escalate_button_on_a_resolved_card(drafting: Harness):
    _ts, conversation_id, card_ts, _draft = await drafted(drafting)
    await drafting.click("U0SAM", blocks.RESOLVE, conversation_id, card_ts)
    await drafting.settle()
    card = card_now(drafting, card_ts)
    assert controls(card) == {} and "Resolved by <@U0SAM>" in text_of(card)


async def test_a_reason_too_long_for_a_menu_option_is_left_out_not_cut(fake: tuple[FakeSlack, str], store: Store,
                                                                      draft_policy: Policy, knowledge: KnowledgeBase):
    long = "the answer cites an article that " + "was rewritten since " * 6
    rules = draft_policy.autonomy.model_copy(update={"reject_reasons": [long, "wrong tone"], "harmful": []})
    async for slack in harness(fake, store, draft_policy.model_copy(update={"autonomy": rules}), knowledge):
        _ts, conversation_id, card_ts, _draft = await drafted(slack)
        options = controls(card_now(slack, card_ts))[blocks.REJECT]["options"]
        assert options == [{"text": {"type": "plain_text", "text": "wrong tone"},
                            "value": blocks.option_value(conversation_id, "wrong tone")}]


async def test_a_proposed_promotion_reaches_the_leads_with_a_promote_button(
        fake: tuple[FakeSlack, str], store: Store, policy: Policy, knowledge: KnowledgeBase,
        monkeypatch: pytest.MonkeyPatch):
    from bot import autonomy

    rules = supervised(policy, "draft", min_sample=2, window=5)
    monkeypatch.setenv("BATON_LEADS", "U0KIM")
    async for slack in harness(fake, store, rules, knowledge):
        for _ in range(2):
            ts = await slack.say("U0DANA", CALENDAR)
            await slack.settle()
            conversation = await store.find_conversation("slack", "T0VENDOR", SHARED, ts)
            handoff = await store.handoff(conversation.id)  # type: ignore[union-attr]
            assert handoff is not None and handoff.card_ts is not None
            assert await slack.click("U0SAM", blocks.APPROVE, handoff.conversation.id, handoff.card_ts) == 200
            await slack.settle()
        [notice] = [p for p in slack.fake.posts(INTERNAL) if blocks.PROMOTE in text_of(p.get("blocks"))]
        assert "could move up from draft to auto" in notice["text"] and "sample 2" in text_of(notice["blocks"])
        assert await slack.click("U0SAM", blocks.PROMOTE, "how_to|draft", notice["posted_ts"]) == 200  # not a lead
        assert (await autonomy.modes(store, rules))["how_to"] == "draft"
        assert await slack.click("U0KIM", blocks.PROMOTE, "how_to|draft", notice["posted_ts"]) == 200
        assert (await autonomy.modes(store, rules))["how_to"] == "auto"
        assert await slack.click("U0KIM", blocks.PROMOTE, "how_to|draft", notice["posted_ts"]) == 200  # again
        assert "out of date" in ephemerals(slack, "U0KIM")[-1]
        assert (await autonomy.modes(store, rules))["how_to"] == "auto"  # one step, once
        assert ephemerals(slack, "U0SAM") == ["Only the support leads (BATON_LEADS) can promote an intent."]
        assert ephemerals(slack, "U0KIM")[-2].startswith("Promoted how_to")
        [change] = await store.autonomy_changes("how_to")
        assert change["by"] == "U0KIM"
