"""Help-center answers in a conversation: a question asked again gets no second copy of the same answer
(the pre-send guard would hold it) but an honest handoff; questions wrapped in context are answered."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from bot.engine import Engine
from bot.model import ConversationState, Person
from bot.service import Outcome
from bot.store import Store
from bot.testing import Customer as Chat
from bot.testing import TestBot, replies

LA = ZoneInfo("America/Los_Angeles")
START = datetime(2026, 11, 20, 10, 0, tzinfo=LA)  # a Friday, in business hours


def Customer(baton: TestBot) -> Chat:  # noqa: N802
    """One customer writing in one thread, a minute between messages."""
    return Chat(baton, start=START, person=Person(id="U0ROBIN", name="Robin Vale", organisation="T0CUSTOMER"))


def holds(outcome: Outcome) -> list[object]:
    return [a for a in outcome.actions if a.kind == "hold"]


async def test_the_same_question_twice_hands_off_honestly_instead_of_holding_a_repeat(baton: TestBot,
                                                                                      store: Store):
    customer = Customer(baton)
    first = await customer.says("how can I get my coworker into our Notewise workspace?")
    assert first.decision is not None and not first.decision.escalate and first.decision.citations
    [answer] = replies(first)
    assert "Settings > Members > Invite" in answer

    second = await customer.says("how can I get my coworker into our Notewise workspace?")
    decision = second.decision
    assert decision is not None and decision.escalate and "knowledge.asked_again" in decision.rules
    assert "guard.repeat" not in decision.rules and not holds(second) and not decision.held
    [notice] = replies(second)
    assert notice != answer and "didn't answer your question" in notice and "person" in notice
    assert decision.citations == ()
    assert second.brief is not None
    assert any("asked again" in why for why in second.brief.why_now)
    assert answer in second.brief.bot_said  # the person taking over sees what the bot already tried
    conversation = await store.get_conversation(second.conversation.id)  # type: ignore[union-attr]
    assert conversation is not None and conversation.state is ConversationState.escalated
    assert customer.replies == [answer, notice]  # the answer reached the customer once, then the notice
    card = customer.card()
    assert card is not None and card.brief == second.brief and answer in card.brief.bot_said


async def test_the_same_question_in_other_words_after_its_answer_also_hands_off(baton: TestBot):
    customer = Customer(baton)
    first = await customer.says("Where do I change the email address I log in with?")
    assert first.decision is not None and first.decision.citations and not first.decision.escalate
    second = await customer.says("ok but how do I update my sign-in email??")
    decision = second.decision
    assert decision is not None and decision.escalate and "knowledge.asked_again" in decision.rules
    assert not holds(second) and replies(second) != replies(first)
    assert customer.replies == replies(first) + replies(second)


async def test_another_question_after_an_answer_is_answered(baton: TestBot):
    customer = Customer(baton)
    first = await customer.says("which languages can Notewise transcribe?")
    second = await customer.says("and how long does a transcript take after the call ends?")
    assert first.decision is not None and second.decision is not None
    assert not second.decision.escalate and second.decision.citations
    assert second.decision.citations != first.decision.citations and not holds(second)
    assert customer.replies == replies(first) + replies(second) and len(customer.replies) == 2


def test_an_answer_is_sent_again_when_it_was_not_the_bots_last_message(bot: Engine):
    question = "what video platforms does the notetaker join?"
    first = bot.triage(question)
    assert first.reply is not None and first.citations
    later = bot.triage(question, previous="You're welcome! If anything else comes up, just write here.")
    assert later.reply == first.reply and not later.escalate
    again = bot.triage(question, previous=first.reply)
    assert again.escalate and "knowledge.asked_again" in again.rules and not again.held
    assert again.reply is not None and "didn't answer" in again.reply


# ---- the question inside what surrounds it ----


@pytest.mark.parametrize("plain, wrapped", [
    ("how do I connect my Outlook calendar?",
     "heads up, we start a pilot tomorrow: how do I connect my Outlook calendar?"),
    ("how do I delete a recording?", "how do I delete a recording, because the client asked us to remove it?"),
    ("where do I update the card we pay with?",
     "ASAP - where do I update the card we pay with before the renewal on the 1st??"),
    ("can I get summaries in German?",
     "Our Berlin office started using Notewise this week. Can I get summaries in German?"),
])
def test_context_around_a_question_does_not_change_its_answer(bot: Engine, plain: str, wrapped: str):
    expected = bot.triage(plain)
    decision = bot.triage(wrapped)
    assert expected.citations and not expected.escalate, plain
    assert not decision.escalate and decision.citations == expected.citations, (wrapped, decision.rules)


def test_a_question_followed_by_a_pasted_wall_of_text_is_answered_from_the_question(bot: Engine):
    filler = "Some background on our setup: twelve teams, four calendars and a lot of recurring calls. " * 70
    text = "how can I share a recording with a client who has no account? " + filler
    assert len(text) > 5000
    decision = bot.triage(text)
    assert not decision.escalate, decision.rules
    assert decision.citations == ("https://help.notewise.example/articles/sharing-recordings",)
    assert decision.reply is not None and "public link" in decision.reply.lower()


def test_a_platform_feature_the_help_center_never_names_goes_to_a_person_not_to_the_platform_sentence(bot: Engine):
    # "Notewise works with Zoom" does not say whether the notetaker joins Zoom webinars: a person answers.
    decision = bot.triage("does the notetaker support Zoom webinars?")
    assert decision.escalate and "knowledge.no_answer" in decision.rules and decision.missing == ()
    assert bot.triage("can the notetaker record Zoom calls?").citations


@pytest.mark.parametrize("question", [
    "how do I invite a teammate to the Acme Corp workspace?",
    "how do I connect my Outlook calendar for our Globex team?",
])
def test_the_customers_own_names_are_not_a_subject_the_help_center_lacks(bot: Engine, question: str):
    decision = bot.triage(question)
    assert not decision.escalate and decision.citations, decision.rules
    assert bot.triage("is notewise HIPAA compliant?").escalate  # a rare term that is the subject still abstains
