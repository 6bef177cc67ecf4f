"""The engine's decisions over a conversation: repeat contact, VIPs, states, actions."""

from datetime import UTC, datetime, timedelta

from bot.model import (
    Conversation,
    ConversationState,
    Message,
    MirrorToInternal,
    OpenHandoff,
    Person,
    PriorContact,
    Reply,
    Severity,
)

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


def message(text: str, *, org: str | None = "T0CUSTOMER", at: datetime = NOW) -> Message:
    return Message(platform="slack", workspace="T0HOME", channel="C0SHARED", thread=None,
                   author=Person(id="U0CUST", name="Dana", organisation=org), text=text, at=at,
                   event_id="Ev1")


def conversation(state=ConversationState.open, severity=None) -> Conversation:
    return Conversation(id="c1", platform="slack", workspace="T0HOME", channel="C0SHARED", thread="1.0",
                        customer=Person(id="U0CUST"), state=state, severity=severity, started_at=NOW,
                        updated_at=NOW)


def test_repeat_contact_about_the_same_topic_within_the_window_escalates(engine):
    text = "The notetaker didn't join my sales call"
    first = engine.triage(text, now=NOW)
    assert not first.escalate and first.intent == "meeting_issue"
    prior = [PriorContact(conversation_id="c0", intent="meeting_issue", state=ConversationState.gathering,
                          started_at=NOW - timedelta(days=3))]
    second = engine.triage(text, now=NOW, prior=prior)
    assert second.escalate
    assert "repeat_contact.meeting_issue.7d" in second.rules
    assert second.signals[0].evidence in text


def test_repeat_contact_ignores_old_or_other_topics(engine):
    text = "The notetaker didn't join my sales call"
    old = [PriorContact(conversation_id="c0", intent="meeting_issue", state=ConversationState.open,
                        started_at=NOW - timedelta(days=8))]
    other = [PriorContact(conversation_id="c0", intent="billing", state=ConversationState.open,
                          started_at=NOW - timedelta(days=1))]
    assert not engine.triage(text, now=NOW, prior=old).escalate
    assert not engine.triage(text, now=NOW, prior=other).escalate


def test_vip_escalations_are_raised_a_level(engine):
    text = "There's an unexpected charge on our invoice"
    plain = engine.triage(text, organisation="T0SOMEONE")
    vip = engine.triage(text, organisation="T0ACME0001")
    assert plain.severity is Severity.high and vip.severity is Severity.critical
    assert "vip.acme" in vip.rules and "vip.acme" not in plain.rules


def test_escalation_opens_a_handoff_and_tells_the_customer_honestly(engine):
    decision, actions = engine.decide(conversation(), message("You charged us twice!"))
    assert decision.escalate
    handoff = next(a for a in actions if isinstance(a, OpenHandoff))
    assert handoff.route == "billing" and handoff.severity is Severity.high
    notice = next(a for a in actions if isinstance(a, Reply))
    assert "person" in notice.text and "repeat yourself" in notice.text and "1 hour" in notice.text
    assert "{" not in notice.text


def test_a_claimed_conversation_is_never_answered_by_the_bot(engine):
    decision, actions = engine.decide(conversation(ConversationState.claimed, Severity.high),
                                      message("how do I connect google calendar?"))
    assert decision.reply is None
    assert actions == [MirrorToInternal(text="how do I connect google calendar?")]


def test_severity_never_goes_down_in_an_escalated_conversation(engine):
    decision, actions = engine.decide(conversation(ConversationState.escalated, Severity.high), message("ok thanks"))
    assert decision.severity is Severity.high
    assert not any(isinstance(a, OpenHandoff) for a in actions)


def test_a_worse_message_in_an_escalated_conversation_raises_the_handoff(engine):
    _, actions = engine.decide(conversation(ConversationState.escalated, Severity.medium),
                               message("and now the whole app is down for everyone"))
    raised = [a for a in actions if isinstance(a, OpenHandoff)]
    assert raised and raised[0].severity is Severity.critical
