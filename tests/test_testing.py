"""The in-memory platform (bot/testing.py) driving the whole bot: inbox, workers, engine, store, courier.

Delivered once when the platform's answer is lost, messages of one thread handled in their order even
when they arrive together, and a handoff's card, notes and staff actions reaching the staff side.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.engine import Engine
from bot.model import ConversationState, Person, Role
from bot.store import Store
from bot.testing import Customer, Failure, TestBot

START = datetime(2026, 11, 20, 10, 0, tzinfo=ZoneInfo("America/Los_Angeles"))  # a Friday, in business hours
DANA = Person(id="U0DANA", name="Dana Smith", organisation="T0CUSTOMER")
CALENDAR = "How do I connect my Outlook calendar?"
DISPUTE = "This is ridiculous. You charged us twice for November."


def customer(baton: TestBot, person: Person = DANA) -> Customer:
    return Customer(baton, start=START, person=person)


# ---- delivered once ----


@pytest.mark.parametrize("failure", ["lost", "server_error", "unreachable", "rate_limited"])
async def test_a_reply_reaches_the_customer_once_whatever_the_first_attempt_did(baton: TestBot, store: Store,
                                                                               failure: Failure):
    platform = baton.platform
    platform.fail(failure, kind="reply")
    dana = customer(baton)
    outcome = await dana.says(CALENDAR)
    assert outcome.decision is not None and outcome.decision.reply is not None
    assert dana.replies == [outcome.decision.reply]  # exactly once
    [row] = await store.outbox_of(dana.conversation_id)
    assert row["status"] == "sent" and row["attempts"] == 1 and platform.delivered(row["id"]) == 1
    tries = [a.result for a in platform.attempts if a.outbox_id == row["id"]]
    # A post whose answer was lost is looked for and found, not posted again; a failure that may have
    # posted is looked for first; one that certainly did not (refused connection, 429) is simply retried.
    assert tries == {"lost": ["posted"], "server_error": ["server_error", "posted"],
                     "unreachable": ["unreachable", "posted"], "rate_limited": ["rate_limited", "posted"]}[failure]
    assert platform.finds == (1 if failure in ("lost", "server_error") else 0)


async def test_a_card_whose_answer_was_lost_is_posted_once_and_its_notes_follow_in_its_thread(baton: TestBot):
    platform = baton.platform
    platform.fail("lost", kind="open_handoff")
    dana = customer(baton)
    outcome = await dana.says(DISPUTE)
    assert outcome.state is ConversationState.escalated
    assert len(platform.cards) == 1
    card = dana.card()
    assert card is not None and [a.result for a in platform.attempts if a.outbox_id == card.outbox_id] == ["posted"]
    assert card.notes() == [f"Dana Smith (customer): {DISPUTE}", f"Baton (bot): {dana.replies[0]}"]
    assert [p.thread for p in card.thread] == [card.ts, card.ts]


async def test_a_reply_that_keeps_failing_is_parked_holds_back_what_follows_and_goes_out_once_later(
        baton: TestBot, store: Store):
    platform = baton.platform
    platform.fail("server_error", kind="reply", times=4)  # every in-process attempt of the courier
    dana = customer(baton)
    outcome = await dana.says(DISPUTE)
    assert outcome.state is ConversationState.escalated
    assert dana.replies == []
    card = dana.card()
    assert card is not None and card.thread == []  # the notes wait behind the parked reply: order is kept
    rows = await store.outbox_of(dana.conversation_id)
    assert [(r["kind"], r["status"]) for r in rows] == [("open_handoff", "sent"), ("reply", "pending"),
                                                        ("note", "pending"), ("note", "pending")]

    assert await baton.app.courier.drain(now=datetime.now(UTC) + timedelta(minutes=1)) == 3  # the park is over
    assert len(dana.replies) == 1 and "person from our team" in dana.replies[0]
    assert card.notes() == [f"Dana Smith (customer): {DISPUTE}", f"Baton (bot): {dana.replies[0]}"]
    assert all(r["status"] == "sent" for r in await store.outbox_of(dana.conversation_id))
    assert platform.finds >= 1  # a 5xx may have posted: it was looked for before posting


async def test_a_refused_delivery_is_kept_as_failed_and_never_posted(baton: TestBot, store: Store):
    baton.platform.fail("refused", kind="reply")
    dana = customer(baton)
    await dana.says(CALENDAR)
    assert dana.replies == []
    [row] = await store.outbox_of(dana.conversation_id)
    assert row["status"] == "failed" and "channel_not_found" in row["last_error"]


async def test_the_same_event_twice_is_handled_and_answered_once(baton: TestBot):
    platform = baton.platform
    message = platform.message(CALENDAR, author=DANA, thread="1700000001.000001", at=START, event_id="EvTwice")
    first = await platform.receive(message)
    again = await platform.receive(message)
    await baton.settle()
    assert first.decision is not None and again.duplicate and again.decision is None
    assert [p.text for p in platform.thread("1700000001.000001")] == [first.decision.reply]


async def test_an_edit_is_worked_on_as_an_edit(baton: TestBot):
    platform = baton.platform
    dana = customer(baton)
    asked = await dana.says(CALENDAR)
    calm = await platform.receive(platform.message("How do I connect my Google calendar?", author=DANA,
                                                   thread=dana.thread, at=START, event_id="EvEdit1"), edit=True)
    assert calm.ignored == "the edit raises no risk" and dana.replies == [asked.decision.reply]  # type: ignore
    raised = await platform.receive(platform.message(DISPUTE, author=DANA, thread=dana.thread, at=START,
                                                     event_id="EvEdit2"), edit=True)
    await baton.settle()
    assert raised.state is ConversationState.escalated and raised.decision is not None
    card = dana.card()
    assert card is not None and card.brief.route == "billing" and len(dana.replies) == 2


# ---- order ----


async def test_two_quick_messages_of_one_thread_are_handled_and_answered_in_their_order(baton: TestBot,
                                                                                      store: Store):
    dana = customer(baton)
    first = await dana.sends(CALENDAR)
    second = await dana.sends("How do I export notes to HubSpot?")
    await baton.settle()
    one, two = await first, await second
    assert one.decision is not None and two.decision is not None
    assert one.decision.citations != two.decision.citations and not two.decision.escalate
    assert dana.replies == [one.decision.reply, two.decision.reply]
    lines = [(r["role"], r["text"]) for r in await store.transcript(dana.conversation_id)]
    assert lines == [("customer", CALENDAR), ("bot", one.decision.reply),
                     ("customer", "How do I export notes to HubSpot?"), ("bot", two.decision.reply)]


async def test_a_detail_given_in_a_quick_second_message_is_not_asked_for_again(baton: TestBot):
    kim = Customer(baton, start=START, person=DANA.model_copy(update={"timezone": "America/Los_Angeles"}))
    first = await kim.sends("The recording of our Weekly Sync is missing")
    second = await kim.sends("it was yesterday at 3pm")
    await baton.settle()
    assert (await first).decision is not None and (await second).decision is not None
    assert len(kim.replies) == 2
    assert "date" in kim.replies[0] and kim.replies[1] == "Weekly Sync, Thu 19 Nov 2026, 15:00 PST: is that right?"


async def test_many_threads_at_once_each_get_exactly_their_answer(baton: TestBot):
    people = [Customer(baton, start=START, person=Person(id=f"U0C{n:03d}", name=f"Customer {n}",
                                                         organisation="T0CUSTOMER")) for n in range(12)]
    waiting = [await person.sends(CALENDAR) for person in people]
    await baton.settle()
    outcomes = await asyncio.gather(*waiting)
    assert all(o.decision is not None and not o.decision.escalate for o in outcomes)
    assert all(person.replies == [outcomes[0].decision.reply] for person in people)  # type: ignore[union-attr]
    assert len(baton.platform.posts) == 12


# ---- the staff side ----


async def test_a_card_its_notes_and_the_staff_actions_reach_the_staff_side(baton: TestBot):
    platform = baton.platform
    dana = customer(baton)
    opened = await dana.says(DISPUTE)
    card = dana.card()
    assert card is not None and card.channel == "C0INTERNAL" and card.brief.route == "billing"
    assert card.state is ConversationState.escalated and card.claimed_by is None
    assert "charged us twice" in card.brief.urgent_words and opened.brief == card.brief
    assert card.notes() == [f"Dana Smith (customer): {DISPUTE}", f"Baton (bot): {dana.replies[0]}"]

    await dana.says("Hello??")
    assert card.mirrored() == ["Hello??"] and len(dana.replies) == 2  # one short acknowledgement

    won = await platform.claim(dana.conversation_id, "U0AGENT")
    late = await platform.claim(dana.conversation_id, "U0OTHER")
    assert won.won and not late.won and late.owner == "U0AGENT"
    assert card.claimed_by == "U0AGENT" and card.state is ConversationState.claimed and card.updates == 1
    assert platform.ephemerals == [("U0OTHER", "Already claimed by U0AGENT.")]

    assert await platform.loop_in(dana.conversation_id, "engineering", "U0AGENT")
    assert not await platform.loop_in(dana.conversation_id, "engineering", "U0OTHER")
    assert card.looped_in == ("engineering",) and card.updates == 2
    [loop] = [p for p in card.thread if p.route == "engineering"]
    assert loop.text.startswith("looped in") and loop.actor == "U0AGENT"

    assert await platform.send_to_customer(dana.conversation_id, "Hi Dana, the refund is on its way.") == []
    [staff] = [p for p in dana.posts if p.kind == "staff_reply"]
    assert staff.text == "Hi Dana, the refund is on its way." and staff.author == "Sam Agent"
    assert card.notes()[-1] == "sent to the customer: Hi Dana, the refund is on its way."

    after = await dana.says("thanks, great")
    assert [a.kind for a in after.actions] == ["mirror"] and card.mirrored()[-1] == "thanks, great"
    assert dana.replies[-1] == "Hi Dana, the refund is on its way."  # the bot stays quiet once claimed

    assert await platform.resolve(dana.conversation_id, "U0AGENT")
    assert card.state is ConversationState.resolved and card.resolved_by == "U0AGENT"
    csat = baton.service.policy.notices.csat
    assert csat and dana.replies[-1] == csat
    assert not await platform.resolve(dana.conversation_id, "U0AGENT")
    assert platform.ephemerals[-1] == ("U0AGENT", "This conversation is already resolved.")
    outbox = [a.outbox_id for a in platform.attempts if a.result == "posted"]
    assert len(outbox) == len(set(outbox))  # nothing posted twice


async def test_a_staff_member_writing_in_the_thread_takes_over(baton: TestBot):
    dana = customer(baton)
    await dana.says(DISPUTE)
    card = dana.card()
    assert card is not None
    staff = await dana.says("Hi Dana, looking at it now", role=Role.staff)
    assert staff.decision is None
    assert card.claimed_by == "U0AGENT" and card.notes()[-1] == "replied in the customer's thread and took over"


async def test_the_platform_is_called_memory_unless_named(store: Store, bot: Engine):
    async with TestBot.create(bot, store, platform="memory") as running:
        dana = customer(running)
        outcome = await dana.says(CALENDAR)
        assert outcome.conversation is not None and outcome.conversation.platform == "memory"
        assert running.platform.name == "memory" and len(dana.replies) == 1
