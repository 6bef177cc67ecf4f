"""Whole conversations through the bot on its in-memory platform (bot/testing.py): the inbox and its workers,
the real engine, help center and store (SQLite and PostgreSQL), the courier and what it delivered."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.engine import Engine
from bot.knowledge import KnowledgeBase
from bot.model import ConversationState, Person, Role
from bot.policy import load_policy
from bot.store import Store
from bot.testing import Customer as Chat
from bot.testing import TestBot, replies

LA = ZoneInfo("America/Los_Angeles")
START = datetime(2026, 11, 20, 10, 0, tzinfo=LA)  # a Friday, in business hours


def Customer(baton: TestBot, *, name: str = "Dana Smith", organisation: str = "T0CUSTOMER",  # noqa: N802
             timezone: str | None = None) -> Chat:
    """One customer writing in one thread, a minute between messages."""
    return Chat(baton, start=START, person=Person(id="U0DANA", name=name, organisation=organisation,
                                                  timezone=timezone))


async def test_a_how_to_is_answered_with_a_citation(baton: TestBot, store: Store):
    customer = Customer(baton)
    outcome = await customer.says("How do I connect my Outlook calendar?")
    decision = outcome.decision
    assert decision is not None and not decision.escalate
    assert decision.citations == ("https://help.notewise.example/articles/connect-calendars",)
    [text] = replies(outcome)
    assert "Settings > Calendars" in text and decision.citations[0] in text
    assert outcome.actions[0].kind == "reply" and outcome.actions[0].citations == decision.citations  # type: ignore
    assert customer.replies == [text] and outcome.delivered == 1  # delivered by the worker that decided
    conversation = await store.get_conversation(outcome.conversation.id)  # type: ignore[union-attr]
    assert conversation is not None and conversation.state is ConversationState.open
    assert baton.platform.cards == []


async def test_a_question_the_help_center_does_not_cover_goes_to_a_person(baton: TestBot, store: Store):
    customer = Customer(baton)
    outcome = await customer.says("Can I integrate Notewise with Jira?")
    decision = outcome.decision
    assert decision is not None and decision.escalate and decision.route == "support"
    assert "knowledge.no_answer" in decision.rules and decision.citations == ()
    [text] = replies(outcome)
    assert "don't want to guess" in text and "http" not in text
    assert outcome.brief is not None
    assert "does not answer this question" in " ".join(outcome.brief.why_now)
    conversation = await store.get_conversation(outcome.conversation.id)  # type: ignore[union-attr]
    assert conversation is not None and conversation.state is ConversationState.escalated
    assert customer.replies == [text]
    card = customer.card()
    assert card is not None and card.brief == outcome.brief and card.brief.route == "support"


async def test_a_meeting_report_gathers_details_over_three_turns_in_any_order(baton: TestBot, store: Store):
    customer = Customer(baton)
    first = await customer.says("Hi, the notetaker never joined our call and there's no recording")
    assert first.decision is not None and first.decision.missing == ("meeting_name", "date", "time", "timezone")
    assert [a.kind for a in first.actions] == ["ask_details"]

    second = await customer.says("It was at 3:30pm PST")  # time and zone first, before the name and date
    assert second.decision is not None and second.decision.missing == ("meeting_name", "date")
    [ask] = replies(second)
    assert "time" not in ask and "zone" not in ask and "name" in ask and "date" in ask

    third = await customer.says("Weekly Sync, yesterday")
    assert third.decision is not None and third.decision.missing == ()
    assert replies(third) == ["Weekly Sync, Thu 19 Nov 2026, 15:30 PST: is that right?"]
    assert not third.decision.escalate
    assert customer.replies == replies(first) + [ask] + replies(third) and customer.card() is None

    fourth = await customer.says("yes, that's right")
    decision = fourth.decision
    assert decision is not None and decision.escalate and decision.route == "support"
    assert "form.meeting.confirmed" in decision.rules
    assert decision.details.model_dump() == {"meeting_name": "Weekly Sync", "date": "2026-11-19", "time": "15:30",
                                             "timezone": "America/Los_Angeles"}
    assert fourth.brief is not None and fourth.brief.details["meeting_name"] == "Weekly Sync"
    assert "won't need to repeat yourself" in replies(fourth)[0]

    conversation = await store.get_conversation(fourth.conversation.id)  # type: ignore[union-attr]
    assert conversation is not None and conversation.state is ConversationState.escalated
    states = [t["to_state"] for t in await store.transitions_of(conversation.id)]
    assert states == ["open", "gathering", "escalated"]
    # Never asked again for something already given: each question only names what was missing.
    bot_lines = [r["text"] for r in await store.transcript(conversation.id) if r["role"] == "bot"]
    assert sum("time it started" in line for line in bot_lines) == 1
    assert customer.replies == bot_lines  # every line the bot stored reached the customer, in order
    card = customer.card()
    assert card is not None and card.brief.details["meeting_name"] == "Weekly Sync"
    assert len(card.notes()) == 8  # the whole transcript follows the card: four messages, four answers


async def test_a_no_to_the_read_back_asks_what_to_correct_and_takes_the_correction(baton: TestBot):
    customer = Customer(baton, timezone="America/Los_Angeles")
    first = await customer.says('The transcript of "Design Crit" yesterday at 2pm is cut off')
    assert replies(first) == ["Design Crit, Thu 19 Nov 2026, 14:00 PST: is that right?"]
    second = await customer.says("no")
    assert second.decision is not None and second.decision.awaiting == "correction"
    assert "Which part" in replies(second)[0]
    third = await customer.says("it was at 4pm")
    assert replies(third) == ["Design Crit, Thu 19 Nov 2026, 16:00 PST: is that right?"]
    fourth = await customer.says("yes")
    assert fourth.decision is not None and fourth.decision.escalate
    assert fourth.decision.details.time == "16:00"
    assert customer.replies == [r for o in (first, second, third, fourth) for r in replies(o)]


async def test_a_frustrated_billing_dispute_escalates_at_once_with_a_full_brief(baton: TestBot):
    customer = Customer(baton, organisation="T0ACME0001", name="Alex Acme")  # a contract customer
    outcome = await customer.says("This is ridiculous. You charged us twice for November and I want a refund NOW.")
    decision = outcome.decision
    assert decision is not None and decision.escalate and decision.route == "billing"
    brief = outcome.brief
    assert brief is not None
    assert brief.customer == "Alex Acme" and brief.organisation == "T0ACME0001"
    assert brief.contract is not None and "Acme" in brief.contract
    assert brief.severity == "critical" and brief.intent == "billing" and brief.route == "billing"
    assert brief.goal.startswith("This is ridiculous.")
    assert any("billing dispute" in w for w in brief.why_now) and any("contract" in w for w in brief.why_now)
    assert "charged us twice" in brief.urgent_words
    assert all(w in "This is ridiculous. You charged us twice for November and I want a refund NOW."
               for w in brief.urgent_words)
    assert brief.bot_said and "person from our team" in brief.bot_said[0]
    assert brief.next_step.startswith("Look up the charges")
    assert brief.due is not None and brief.due > customer.at
    assert [line.role for line in brief.transcript] == [Role.customer, Role.bot]
    assert 0 < brief.confidence <= 1
    text = brief.text()
    assert "charged us twice" in text and "Alex Acme" in text and "billing" in text

    # Later messages are mirrored to the internal thread; while nobody has claimed it, the first of them
    # gets one short acknowledgement, and after a claim the bot is silent to the customer.
    later = await customer.says("Hello??")
    assert [a.kind for a in later.actions] == ["mirror", "reply"]
    assert "added this" in replies(later)[0]
    again = await customer.says("The second charge was on the 3rd")
    assert [a.kind for a in again.actions] == ["mirror"]
    staff = await customer.says("Hi Alex, looking at it now", role=Role.staff)
    assert staff.decision is None
    conversation = await baton.store.get_conversation(outcome.conversation.id)  # type: ignore[union-attr]
    assert conversation is not None and conversation.state is ConversationState.claimed
    after = await customer.says("ok, thank you")
    assert [a.kind for a in after.actions] == ["mirror"]

    # What was delivered: two messages to the customer; for staff the card, the transcript in its thread,
    # each later message mirrored there, and the card redrawn as claimed by the member who replied.
    assert customer.replies == replies(outcome) + replies(later)
    card = customer.card()
    assert card is not None and card.brief == brief and card.brief.route == "billing"
    assert card.mirrored() == ["Hello??", "The second charge was on the 3rd", "ok, thank you"]
    assert card.claimed_by == "U0AGENT" and card.state is ConversationState.claimed


@pytest.mark.parametrize("notice, kind", [
    ("Hi {{name}}, could you tell me {fields}?", "placeholder"),
    ("Hi Marcus, could you tell me {fields}?", "wrong_person"),
    ("Please tell me {fields}. See https://evil.example.com for details.", "unknown_link"),
    ("Internal note: VIP. Could you tell me {fields}?", "internal"),
])
async def test_the_guard_holds_a_bad_message_and_escalates_with_the_reason(tmp_path: Path, store: Store, notice,
                                                                          kind):
    source = Path(__file__).resolve().parent.parent / "bot" / "defaults" / "policy.toml"
    original = 'ask_details = "So our team can look into this, could you tell me {fields}?"'
    text = source.read_text()
    assert original in text
    policy_path = tmp_path / "policy.toml"
    policy_path.write_text(text.replace(original, f"ask_details = {notice!r}".replace("'", '"')))
    policy = load_policy(policy_path)
    async with TestBot.create(Engine(policy, KnowledgeBase.load(None, policy.knowledge)), store) as baton:
        customer = Customer(baton)
        outcome = await customer.says("my recording is missing")
    decision = outcome.decision
    assert decision is not None and decision.escalate and f"guard.{kind}" in decision.rules
    held = [a for a in outcome.actions if a.kind == "hold"]
    assert len(held) == 1 and any(p.startswith(kind) for p in held[0].problems)  # type: ignore[union-attr]
    sent = replies(outcome)
    assert all(notice.split(",")[0] not in s for s in sent)  # the bad text is not among what is sent
    review = await store.held_actions(outcome.conversation.id)  # type: ignore[union-attr]
    assert len(review) == 1 and review[0]["status"] == "held" and kind in review[0]["last_error"]
    # Everything else was delivered; the held message never reached the courier, nor the customer.
    rows = await store.outbox_of(outcome.conversation.id)  # type: ignore[union-attr]
    assert [r["status"] for r in rows if r["kind"] == "hold"] == ["held"]
    assert all(r["status"] == "sent" for r in rows if r["kind"] != "hold")
    assert "hold" not in [a.kind for a in baton.platform.attempts]
    assert customer.replies == sent and all(notice.split(",")[0] not in r for r in customer.replies)
    assert outcome.brief is not None and any("pre-send guard" in w for w in outcome.brief.why_now)


async def test_the_guard_will_not_send_the_same_message_twice(baton: TestBot):
    # Detail gathering words a second question differently (tests/test_gathering.py); the guard is the
    # backstop for any reply that would still be the bot's previous message.
    customer = Customer(baton)
    first = await customer.says("my recording is missing")
    [question] = replies(first)
    again = await customer.says("hmm")  # nothing new: asked again in other words, not held as a repeat
    assert again.decision is not None and "guard.repeat" not in again.decision.rules and replies(again) != [question]
    decision = baton.service.engine.triage("my recording is missing", previous=question)
    assert decision.escalate and "guard.repeat" in decision.rules
    assert [text for text, _ in decision.held] == [question] and decision.reply != question
