"""Never silent: every customer message ends in an answer, a question or an honest handoff notice.

Each case runs through the engine (``triage`` and ``decide``) and through the whole bot on its in-memory
platform (bot/testing.py: inbox workers, a real store on SQLite and PostgreSQL when it is installed, the
courier and what it delivered). The messages are written for these tests.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import openai
import pytest
from openai_fake import FakeOpenAI

from bot.engine import Engine
from bot.guard import Guard
from bot.llm import LanguageModel
from bot.model import (
    Conversation,
    ConversationState,
    Hold,
    Message,
    MirrorToInternal,
    OpenHandoff,
    Person,
    Reply,
    Severity,
)
from bot.policy import Policy, PolicyError, load_policy
from bot.service import Outcome
from bot.store import Store
from bot.testing import Customer as Chat
from bot.testing import TestBot, replies

NY = ZoneInfo("America/New_York")
WEDNESDAY = datetime(2026, 11, 18, 11, 0, tzinfo=NY)  # in business hours (Mon-Fri 09:00-18:00 New York)
SATURDAY = datetime(2026, 11, 21, 14, 0, tzinfo=NY)
GOLD = Path(__file__).with_name("gold")
_ids = itertools.count()


def said(decision) -> bool:  # type: ignore[no-untyped-def]
    return decision.reply is not None or decision.escalate


def conversation(state: ConversationState = ConversationState.open, *, last_reply: str | None = None,
                 severity: Severity | None = None) -> Conversation:
    return Conversation(id="c1", platform="slack", workspace="T0HOME", channel="C0SHARED", thread="1.0",
                        customer=Person(id="U0CUST", name="Dana Smith"), state=state, severity=severity,
                        last_reply=last_reply, started_at=WEDNESDAY, updated_at=WEDNESDAY)


def message(text: str, *, at: datetime = WEDNESDAY) -> Message:
    return Message(platform="slack", workspace="T0HOME", channel="C0SHARED", thread="1.0",
                   author=Person(id="U0CUST", name="Dana Smith", organisation="T0CUSTOMER"), text=text, at=at,
                   event_id=f"Ev{next(_ids)}")


# ---- greetings, thanks, emoji, "help" ----

GREETINGS = ["hi", "hello team", "good morning", "Hey there!", "hiya folks 👋"]
THANKS = ["thanks!", "ty, that worked", "thank you so much, that did the trick", "cheers, much appreciated"]
ASKING = ["please help", "help", "can someone help me?", "is anyone there?", "🙏", ":wave:", "?",
          "<https://notewise.example/r/8812|recording>", "<@U0TEAM>"]


@pytest.mark.parametrize("text", GREETINGS)
def test_a_greeting_gets_a_short_reply_asking_what_they_need(bot: Engine, text: str):
    decision = bot.triage(text, now=WEDNESDAY)
    assert not decision.escalate and "smalltalk.greeting" in decision.rules
    assert decision.reply in bot.policy.notices.greeting and decision.reply.endswith("?")
    assert decision.citations == () and decision.language is None


@pytest.mark.parametrize("text", THANKS)
def test_thanks_closes_warmly(bot: Engine, text: str):
    decision = bot.triage(text, now=WEDNESDAY)
    assert not decision.escalate and "smalltalk.thanks" in decision.rules
    assert decision.reply in bot.policy.notices.thanks and "?" not in decision.reply


@pytest.mark.parametrize("text", ASKING)
def test_emoji_a_bare_link_or_help_gets_a_question_about_what_they_need(bot: Engine, text: str):
    decision = bot.triage(text, now=WEDNESDAY)
    assert not decision.escalate and decision.reply in bot.policy.notices.help, decision.rules
    assert any(r.startswith("smalltalk.") for r in decision.rules)


def test_a_real_message_that_starts_with_thanks_is_not_small_talk(bot: Engine):
    decision = bot.triage("thanks, but the recording of our standup is still missing", now=WEDNESDAY)
    assert not any(r.startswith("smalltalk.") for r in decision.rules)
    assert decision.intent == "meeting_issue" and decision.awaiting == "details"


def test_a_second_message_without_a_request_goes_to_a_person_instead_of_looping(bot: Engine):
    first, _ = bot.decide(conversation(), message("hi"))
    assert first.reply is not None and not first.escalate
    second, actions = bot.decide(conversation(last_reply=first.reply), message("hello?"))
    assert second.escalate and "smalltalk.again" in second.rules and second.route == "support"
    assert any(isinstance(a, OpenHandoff) for a in actions)
    assert second.reply is not None and second.reply.startswith(bot.policy.notices.again.split("{")[0])
    assert second.reply != first.reply


def test_thanks_after_thanks_gets_a_different_closing(bot: Engine):
    first, _ = bot.decide(conversation(last_reply="Here's how to connect a calendar ..."), message("thanks!"))
    second, actions = bot.decide(conversation(last_reply=first.reply), message("thank you"))
    assert first.reply and second.reply and first.reply != second.reply
    assert not second.escalate and not any(isinstance(a, Hold) for a in actions)


def test_an_ok_or_a_thumbs_up_after_an_answer_closes_and_after_a_question_hands_off(bot: Engine):
    closed, _ = bot.decide(conversation(last_reply="To delete a recording, open it ..."), message("👍"))
    assert closed.reply in bot.policy.notices.thanks and not closed.escalate
    asked = bot.policy.notices.help[0]
    handed, _ = bot.decide(conversation(last_reply=asked), message("ok"))
    assert handed.escalate and "smalltalk.again" in handed.rules


# ---- languages Baton does not answer in ----

FOREIGN = [
    ("Hallo, die Aufnahme unseres Teammeetings von gestern ist verschwunden. Können Sie helfen?", "de", "German"),
    ("Bonjour, je n'arrive plus à me connecter à mon compte depuis ce matin.", "fr", "French"),
    ("Hola, ¿por qué me cobraron dos veces este mes? Necesito una respuesta.", "es", "Spanish"),
    ("Olá, a transcrição da reunião de ontem está incompleta.", "pt", "Portuguese"),
    ("Ciao, il riassunto della riunione non è mai arrivato.", "it", "Italian"),
    ("昨日の会議の録音が見つかりません。確認してもらえますか？", "ja", "Japanese"),
    ("会議の要約が届きません。", "ja", "Japanese"),
    ("Здравствуйте, бот не подключился к нашей встрече.", "ru", "Russian"),
]
ENGLISH = [
    "ok", "Notewise Zoom HubSpot Okta SAML", "sso via okta?", "pls fix asap",
    "TypeError: Cannot read properties of undefined (reading 'speakers') at Timeline.tsx:88",
    "see https://app.notewise.example/recordings/7f3a2 <@U0ANA> <#C0GENERAL|general>",
    "Weekly Sync", "the QBR w/ Globex GmbH - recording?", "Kubernetes pod CrashLoopBackOff",
    "recording missing, transcript blank, summary wrong", "merci", "Gesundheit, lol",
]


@pytest.mark.parametrize("text, code, name", FOREIGN)
def test_a_message_in_another_language_is_handed_off_with_the_language_named(bot: Engine, text: str, code: str,
                                                                             name: str):
    decision = bot.triage(text, now=WEDNESDAY)
    assert decision.escalate and f"language.{code}" in decision.rules
    assert decision.language == f"{name} ({code})"
    assert decision.reply is not None and "English" in decision.reply and "follow up" in decision.reply
    assert decision.reply.isascii() or "–" in decision.reply  # the notice itself is in English


@pytest.mark.parametrize("text", ENGLISH)
def test_short_english_product_names_code_and_links_are_never_called_foreign(bot: Engine, text: str):
    decision = bot.triage(text, now=WEDNESDAY)
    assert decision.language is None and not any(r.startswith("language.") for r in decision.rules)
    assert said(decision)


def test_a_form_answer_is_not_judged_for_its_language(bot: Engine):
    decision = bot.triage("Design Sync Équipe", intent="meeting_issue", now=WEDNESDAY)
    assert decision.language is None


def test_a_policy_can_answer_in_more_than_english(tmp_path: Path):
    source = Path(__file__).resolve().parent.parent / "bot" / "defaults" / "policy.toml"
    text = source.read_text()
    assert "answers = ['en']" in text
    path = tmp_path / "policy.toml"
    path.write_text(text.replace("answers = ['en']", "answers = ['en', 'fr']"))
    engine = Engine(load_policy(path))
    french = engine.triage("Bonjour, je n'arrive plus à me connecter à mon compte depuis ce matin.")
    german = engine.triage(FOREIGN[0][0])
    assert french.language is None and german.language == "German (de)"
    assert german.reply is not None and "English or French" in german.reply


# ---- over-long messages ----


def _paste(start: str, end: str, size: int = 5000) -> str:
    filler = "2026-11-18T10:00:01Z worker-3 INFO sync job heartbeat ok queue=meetings lag_ms=12\n"
    middle = filler * ((size - len(start) - len(end)) // len(filler) + 1)
    return (start + middle)[: size - len(end)] + end


def test_an_over_long_message_is_triaged_on_its_start_and_end_with_verbatim_evidence(bot: Engine):
    text = _paste("You charged us twice for the Pro plan this month. Log below.\n",
                  "\nAlso the recording from Tuesday is gone.")
    assert len(text) == 5000
    decision = bot.triage(text, now=WEDNESDAY)
    assert decision.escalate and "long_message.start_and_end" in decision.rules
    assert {"billing", "data_loss"} <= {s.kind for s in decision.signals}
    assert all(s.evidence and s.evidence in text for s in decision.signals)
    assert decision.reply is not None


def test_evidence_that_would_span_the_cut_stays_a_span_of_the_original(bot: Engine):
    head = "x " * 1495 + "URGENT"  # the last words before the cut ...
    text = head + " " + "y " * 500 + "\n" + "z " * 400 + "please answer ASAP!!!"  # ... and the end: weak cues
    assert len(text) > 4000
    decision = bot.triage(text, now=WEDNESDAY)
    assert said(decision)
    assert all(s.evidence in text for s in decision.signals)


def test_an_over_long_calm_question_is_still_answered_or_handed_off(bot: Engine):
    text = _paste("Hi team, pasting our meeting export config for context.\n",
                  "\nHow do I connect my Outlook calendar?")
    decision = bot.triage(text, now=WEDNESDAY)
    assert said(decision) and "long_message.start_and_end" in decision.rules
    assert decision.citations or decision.escalate


# ---- assisted intents, unclear messages ----


@pytest.mark.parametrize("text, intent, route", [
    ("the export to PDF button shows an error and nothing downloads", "bug_report", "engineering"),
    ("Please send our invoices to the finance team's address from now on", "billing", "billing"),
])
def test_an_assisted_intent_is_handed_off_until_drafts_exist(bot: Engine, text: str, intent: str, route: str):
    decision = bot.triage(text, now=WEDNESDAY)
    assert decision.intent == intent and decision.escalate and decision.route == route
    assert f"tier.{intent}.assisted" in decision.rules
    topic = bot.policy.notices.intent_topics[intent]
    assert decision.reply is not None and decision.reply.startswith(f"I understand this is {topic}.")


def test_a_vague_message_gets_one_clarifying_question_then_an_honest_handoff(bot: Engine):
    first, _ = bot.decide(conversation(), message("so about that thing from last week"))
    assert not first.escalate and "clarify.other" in first.rules and first.reply in bot.policy.notices.unclear
    second, _ = bot.decide(conversation(last_reply=first.reply), message("you know, the one with Marco"))
    assert second.escalate and "clarify.unknown" in second.rules
    assert second.reply is not None and "not sure" in second.reply and "person from our team" in second.reply


def test_feedback_gets_a_reply_of_its_own(bot: Engine):
    decision = bot.triage("love the app, the summaries saved me an hour today. great job", now=WEDNESDAY)
    assert not decision.escalate and decision.reply in bot.policy.notices.replies["feedback"]


# ---- the handoff notice: what it understood, and when people are back ----


@pytest.mark.parametrize("text, topic", [
    ("You charged us twice for November", "about a charge on your invoice"),
    ("the recording from yesterday is gone", "about a recording or notes that are missing"),
    ("someone logged into my account from a device I don't recognise", "about your account's security"),
])
def test_the_handoff_notice_says_what_it_understood(bot: Engine, text: str, topic: str):
    decision = bot.triage(text, now=WEDNESDAY)
    assert decision.escalate and decision.reply is not None
    assert decision.reply.startswith(f"I understand this is {topic}.")
    assert "back" not in decision.reply  # in business hours: no word of when the team is back


@pytest.mark.parametrize("now, zone, back", [
    (SATURDAY, None, "back Monday at 09:00 America/New_York"),
    (datetime(2026, 11, 18, 23, 30, tzinfo=NY), None, "back tomorrow at 09:00 America/New_York"),
    (datetime(2026, 11, 17, 7, 15, tzinfo=NY), None, "back today at 09:00 America/New_York"),
    (datetime(2026, 11, 20, 18, 30, tzinfo=NY), None, "back Monday at 09:00 America/New_York"),
    (SATURDAY, "Europe/Paris", "back Monday at 09:00 America/New_York (Monday at 15:00 your time)"),
    (datetime(2026, 11, 21, 19, 0, tzinfo=UTC), "Asia/Tokyo", "(tomorrow at 23:00 your time)"),  # Sunday 04:00 there
])
def test_outside_business_hours_the_notice_says_when_the_team_is_back(bot: Engine, now: datetime,
                                                                      zone: str | None, back: str):
    decision = bot.triage("You charged us twice for November", now=now, zone=zone)
    assert decision.reply is not None and back in decision.reply
    assert "within 1 hour during business hours" in decision.reply


def test_every_notice_that_promises_a_reply_time_says_when_the_team_is_back(bot: Engine):
    notes = [bot.triage(text, now=SATURDAY).reply
             for text in (FOREIGN[0][0], "the export to PDF button shows an error")]
    notes += [bot.no_answer(Severity.medium, now=SATURDAY),
              bot.triage("you know, the one with Marco", previous=bot.policy.notices.unclear[0], now=SATURDAY).reply,
              bot.triage("hello?", previous=bot.policy.notices.greeting[0], now=SATURDAY).reply]
    assert all(n is not None and "back Monday at 09:00" in n for n in notes), notes
    assert "back" not in bot.no_answer(Severity.medium, now=WEDNESDAY)


# ---- the handoff while nobody has claimed it yet ----


def test_writing_again_while_a_handoff_is_unclaimed_gets_one_acknowledgement(bot: Engine):
    notice = bot.triage("You charged us twice for November", now=WEDNESDAY).reply
    first, actions = bot.decide(conversation(ConversationState.escalated, last_reply=notice,
                                             severity=Severity.high), message("the second charge was on the 3rd"))
    assert first.reply in bot.policy.notices.acknowledged
    assert [type(a) for a in actions] == [MirrorToInternal, Reply]
    second, actions = bot.decide(conversation(ConversationState.escalated, last_reply=first.reply,
                                              severity=Severity.high), message("and the invoice number is 4471"))
    assert second.reply is None and [type(a) for a in actions] == [MirrorToInternal]


def test_after_a_claim_the_bot_stays_quiet(bot: Engine):
    decision, actions = bot.decide(conversation(ConversationState.claimed, last_reply="a staff reply",
                                                severity=Severity.high), message("hello??"))
    assert decision.reply is None and [type(a) for a in actions] == [MirrorToInternal]


# ---- every notice passes the guard; the policy's notices are checked at load ----


def test_every_never_silent_notice_passes_the_pre_send_guard(policy: Policy):
    guard = Guard(policy)
    n = policy.notices
    texts = [*n.greeting, *n.help, *n.thanks, *n.unclear, *n.acknowledged,
             *(t for ts in n.replies.values() for t in ts), n.understood.format(topic="about x"),
             n.closed.format(back="Monday at 09:00 America/New_York")]
    for text in texts:
        assert not guard.check(text, customer_name="Dana Smith"), text


def test_a_topic_for_an_unknown_signal_is_refused_at_load(tmp_path: Path):
    source = Path(__file__).resolve().parent.parent / "bot" / "defaults" / "policy.toml"
    path = tmp_path / "policy.toml"
    path.write_text(source.read_text().replace("signal_topics.billing =", "signal_topics.invoices ="))
    with pytest.raises(PolicyError, match="unknown signal 'invoices'"):
        load_policy(path)


# ---- nothing is ever silent: the gold set's calm rows and odd inputs ----


def _calm_rows() -> list[str]:
    texts = []
    for name in ("sensitive.jsonl", "product.jsonl", "paraphrases.jsonl"):
        path = GOLD / name
        if path.exists():
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            texts += [r.get("text") or r["question"] for r in rows if r.get("expect", "calm") == "calm"]
    return texts


ODD = [
    "", "   ", "\n\n", "👍", "🙏🙏🙏", ":+1:", ":tada: :tada:", "?", "??", "!!!", "...", "hi", "thanks", "ok", "yes",
    "no", "help", "HELP", "<https://notewise.example/r/123>", "https://notewise.example/share/abc",
    "<@U0AGENT>", "<@U0AGENT> <#C0SUPPORT|support>", "*bold*", "`code`", "```\nstack trace\n```", "> quoted",
    "x" * 5000, ("word " * 1000).strip(), "a" * 4001, "1", "42", "5/5", "asdfghjkl", "lol", "hmm",
    "Guten Morgen, wie kann ich meine Aufnahmen exportieren?", "¿Cómo cambio mi contraseña?",
    "Je voudrais annuler mon abonnement.", "会議の要約が届きません。",
]


@pytest.mark.parametrize("text", _calm_rows() + ODD)
def test_every_message_ends_in_a_reply_or_a_handoff(bot: Engine, text: str):
    for now in (WEDNESDAY, SATURDAY):
        decision = bot.triage(text, now=now)
        assert decision.reply is not None or decision.escalate, (text[:80], decision.rules)


def test_the_calm_rows_are_there():
    assert len(_calm_rows()) >= 40


# ---- through the whole bot, with a real store ----


def Customer(baton: TestBot, *, start: datetime = WEDNESDAY, timezone: str | None = None) -> Chat:  # noqa: N802
    return Chat(baton, start=start, person=Person(id="U0DANA", name="Dana Smith",
                                                             organisation="T0CUSTOMER", timezone=timezone))


async def test_greeting_then_a_question_then_thanks(baton: TestBot):
    customer = Customer(baton)
    hello = await customer.says("hello team")
    assert replies(hello) == [baton.service.policy.notices.greeting[0]] and hello.state is ConversationState.open
    answer = await customer.says("How do I connect my Outlook calendar?")
    assert answer.decision is not None and answer.decision.citations and not answer.decision.escalate
    thanks = await customer.says("ty, that worked")
    assert replies(thanks) == [baton.service.policy.notices.thanks[0]]
    again = await customer.says("thanks again!")
    assert replies(again) == [baton.service.policy.notices.thanks[1]]
    assert not any(a.kind == "hold" for o in (hello, answer, thanks, again) for a in o.actions)
    assert customer.replies == [r for o in (hello, answer, thanks, again) for r in replies(o)]


async def test_two_messages_without_a_request_hand_off_politely(baton: TestBot, store: Store):
    customer = Customer(baton)
    first = await customer.says("hi")
    second = await customer.says("👋")
    assert second.decision is not None and "smalltalk.again" in second.decision.rules
    assert second.brief is not None and any("without a request" in w for w in second.brief.why_now)
    assert [a.kind for a in second.actions if a.kind != "note"] == ["open_handoff", "reply"]
    assert second.state is ConversationState.escalated and replies(first) != replies(second)
    assert customer.replies == replies(first) + replies(second)
    card = customer.card()
    assert card is not None and card.brief == second.brief and len(card.notes()) == 4  # the transcript so far


async def test_a_foreign_language_message_hands_off_with_the_language_in_the_brief(baton: TestBot):
    customer = Customer(baton)
    outcome = await customer.says(FOREIGN[0][0])
    assert outcome.brief is not None and outcome.brief.language == "German (de)"
    assert "Language: German (de)" in outcome.brief.text()
    assert any("written in German (de)" in w for w in outcome.brief.why_now)
    [notice] = replies(outcome)
    assert "English" in notice and outcome.state is ConversationState.escalated
    assert customer.replies == [notice]
    card = customer.card()
    assert card is not None and card.brief.language == "German (de)"


async def test_an_unclaimed_handoff_acknowledges_once_and_a_claim_silences_the_bot(baton: TestBot, store: Store):
    customer = Customer(baton)
    opened = await customer.says("the recording from yesterday is gone")
    assert opened.state is ConversationState.escalated
    [notice] = replies(opened)
    assert notice.startswith("I understand this is about a recording or notes that are missing.")
    more = await customer.says("it's about 12 meetings")
    assert replies(more) == [baton.service.policy.notices.acknowledged[0]]
    still = await customer.says("hello?")
    assert replies(still) == [] and [a.kind for a in still.actions] == ["mirror"]
    assert outcome_id(opened) is not None
    won = await baton.platform.claim(outcome_id(opened), "U0AGENT")
    assert won.won
    after = await customer.says("any news?")
    assert replies(after) == [] and [a.kind for a in after.actions] == ["mirror"]
    bot_lines = [r["text"] for r in await store.transcript(outcome_id(opened)) if r["role"] == "bot"]
    assert bot_lines == [notice, baton.service.policy.notices.acknowledged[0]]
    assert customer.replies == bot_lines  # delivered: what the bot said, and nothing after the claim
    card = customer.card()
    assert card is not None and card.claimed_by == "U0AGENT"
    assert card.mirrored() == ["it's about 12 meetings", "hello?", "any news?"]  # staff still see everything


def outcome_id(outcome: Outcome) -> str:
    assert outcome.conversation is not None
    return outcome.conversation.id


async def test_a_weekend_handoff_says_when_the_team_is_back(baton: TestBot):
    customer = Customer(baton, start=SATURDAY, timezone="Europe/London")
    outcome = await customer.says("You charged us twice for November")
    [notice] = replies(outcome)
    assert "back Monday at 09:00 America/New_York (Monday at 14:00 your time)" in notice
    assert outcome.brief is not None and outcome.brief.due is not None
    assert outcome.brief.due.astimezone(NY) == datetime(2026, 11, 23, 10, 0, tzinfo=NY)  # 1 hour of business time
    assert customer.replies == [notice]


async def test_an_over_long_message_through_the_service_keeps_the_original(baton: TestBot, store: Store):
    text = _paste("Someone logged into my account from an unknown device last night.\n", "\nPlease check.")
    customer = Customer(baton)
    outcome = await customer.says(text)
    assert outcome.decision is not None and outcome.decision.escalate and outcome.decision.route == "security"
    lines = await store.transcript(outcome_id(outcome))
    assert lines[0]["text"] == text  # stored as written, all 5,000 characters
    assert outcome.brief is not None and all(w in text for w in outcome.brief.urgent_words)
    assert any("start and its end" in w for w in outcome.brief.why_now)
    card = customer.card()
    assert card is not None and card.notes()[0] == f"Dana Smith (customer): {text}"  # staff get all of it too


async def test_a_vague_message_through_the_service_asks_once_then_hands_off(baton: TestBot):
    customer = Customer(baton)
    first = await customer.says("so about that thing from last week")
    assert replies(first) == baton.service.policy.notices.unclear and first.state is ConversationState.open
    second = await customer.says("you know, the one with Marco")
    assert second.decision is not None and "clarify.unknown" in second.decision.rules
    assert second.state is ConversationState.escalated
    assert customer.replies == replies(first) + replies(second)


# ---- an assisted intent with a language model: the brief carries the model's draft ----


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI()
    await server.start()
    yield server
    await server.close()


async def test_an_assisted_handoff_carries_the_models_draft(store: Store, bot: Engine, fake: FakeOpenAI):
    assert fake.server is not None
    client = openai.AsyncOpenAI(base_url=str(fake.server.make_url("/v1")), api_key="test-key", max_retries=0)
    llm = LanguageModel(client, "fake-model", store, timeout=2.0)
    async with TestBot.create(bot, store, llm=llm, first_reply=5.0) as baton:
        outcome = await Customer(baton).says("the export to PDF button shows an error and nothing downloads")
        decision, brief = outcome.decision, outcome.brief
        assert decision is not None and "tier.bug_report.assisted" in decision.rules
        assert decision.route == "engineering"
        assert brief is not None and brief.draft is not None and brief.draft.startswith("Thanks for flagging this")
        assert "Draft reply (approve or edit before sending)" in brief.text()
        assert await baton.service.draft(outcome_id(outcome)) == brief.draft
        card = baton.platform.card(outcome_id(outcome))  # staff see the draft on the card
        assert card is not None and card.brief.draft == brief.draft


async def test_a_risk_handoff_brief_carries_no_draft(store: Store, bot: Engine, fake: FakeOpenAI):
    assert fake.server is not None
    client = openai.AsyncOpenAI(base_url=str(fake.server.make_url("/v1")), api_key="test-key", max_retries=0)
    llm = LanguageModel(client, "fake-model", store, timeout=2.0)
    async with TestBot.create(bot, store, llm=llm, first_reply=5.0) as baton:
        outcome = await Customer(baton).says("You charged us twice for November")
    assert outcome.brief is not None and outcome.brief.draft is None
