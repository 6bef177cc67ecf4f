"""Detail gathering that survives real answers, through the whole bot on its in-memory platform
(bot/testing.py: inbox workers, engine, a real SQLite store, courier), checking what was delivered.

Corrections of any field at any turn, answers the bot cannot read (asked once more in other words,
then handed to a person with what was gathered and what was not), lowercase and dashed meeting names,
spoken times, and never a held duplicate on any of these paths.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from bot.engine import Engine
from bot.model import ConversationState, Person, Role
from bot.service import Outcome
from bot.store import Store
from bot.testing import Customer as Chat
from bot.testing import TestBot

LA = ZoneInfo("America/Los_Angeles")
START = datetime(2026, 11, 20, 10, 0, tzinfo=LA)  # Friday 20 November 2026, in business hours


@pytest.fixture
async def baton(sqlite_store: Store, bot: Engine) -> AsyncIterator[TestBot]:
    async with TestBot.create(bot, sqlite_store) as running:
        yield running


def Customer(baton: TestBot, *, timezone: str | None = "America/Los_Angeles") -> Chat:  # noqa: N802
    """One customer (in Los Angeles, as their Slack profile says) writing in one thread, a minute apart."""
    return Chat(baton, start=START, person=Person(id="U0KIM", name="Kim Lee", organisation="T0CUSTOMER",
                                                  timezone=timezone))


def said(outcome: Outcome) -> str:
    [text] = [a.text for a in outcome.actions if a.kind in ("reply", "ask_details")]  # type: ignore[union-attr]
    return text


def assert_delivered(customer: Chat) -> None:
    """Every message the bot decided to send reached the customer's thread, once, in order."""
    assert customer.replies == [said(outcome) for outcome in customer.outcomes]


async def bot_lines(store: Store, outcome: Outcome) -> list[str]:
    assert outcome.conversation is not None
    return [r["text"] for r in await store.transcript(outcome.conversation.id) if r["role"] == Role.bot.value]


FIRST = 'The transcript of "Design Crit" yesterday at 2pm is cut off'
READ_BACK = "Design Crit, Thu 19 Nov 2026, 14:00 PST: is that right?"
GATHERED = {"meeting_name": "Design Crit", "date": "2026-11-19", "time": "14:00", "timezone": "America/Los_Angeles"}


@pytest.mark.parametrize("correction, changed, read_back", [
    ("no, it was Tuesday", {"date": "2026-11-17"}, "Design Crit, Tue 17 Nov 2026, 14:00 PST: is that right?"),
    ("actually 3pm", {"time": "15:00"}, "Design Crit, Thu 19 Nov 2026, 15:00 PST: is that right?"),
    ("sorry, the meeting was called Ops Sync", {"meeting_name": "Ops Sync"},
     "Ops Sync, Thu 19 Nov 2026, 14:00 PST: is that right?"),
    ("wrong date - the 14th", {"date": "2026-11-14"}, "Design Crit, Sat 14 Nov 2026, 14:00 PST: is that right?"),
    ("no, that was Eastern time", {"timezone": "America/New_York"},
     "Design Crit, Thu 19 Nov 2026, 14:00 EST: is that right?"),
    ("no, it was the weekly design review", {"meeting_name": "weekly design review"},
     "weekly design review, Thu 19 Nov 2026, 14:00 PST: is that right?"),
    ("not quite, it started at quarter past two", {"time": "14:15"},
     "Design Crit, Thu 19 Nov 2026, 14:15 PST: is that right?"),
])
async def test_a_correction_of_one_field_changes_only_that_field_and_reads_back_again(
        baton: TestBot, correction: str, changed: dict[str, str], read_back: str):
    customer = Customer(baton)
    assert said(await customer.says(FIRST)) == READ_BACK
    outcome = await customer.says(correction)
    decision = outcome.decision
    assert decision is not None and not decision.escalate and decision.awaiting == "confirm"
    assert decision.details.model_dump() == GATHERED | changed
    assert said(outcome) == read_back
    confirmed = await customer.says("yes")
    assert confirmed.decision is not None and confirmed.decision.escalate
    assert "form.meeting.confirmed" in confirmed.decision.rules
    assert confirmed.brief is not None and confirmed.brief.details == GATHERED | changed
    assert customer.held() == []
    assert_delivered(customer)


async def test_a_correction_while_details_are_still_missing_is_taken_without_repeating_the_question(
        baton: TestBot, sqlite_store: Store):
    customer = Customer(baton, timezone=None)
    first = await customer.says("the notetaker never joined our call yesterday at 3pm")
    assert first.decision is not None and first.decision.missing == ("meeting_name", "timezone")
    second = await customer.says("actually it was 4pm, sorry")
    assert second.decision is not None and second.decision.details.time == "16:00"
    assert second.decision.details.date == "2026-11-19" and not second.decision.escalate
    assert said(second) != said(first)  # the same question in the same words would be held as a repeat
    third = await customer.says('it\'s called "Roadmap review", Pacific time')
    assert said(third) == "Roadmap review, Thu 19 Nov 2026, 16:00 PST: is that right?"
    assert customer.held() == []
    assert_delivered(customer)
    lines = await bot_lines(sqlite_store, third)
    assert len(lines) == len(set(lines)) == 3


async def test_a_bare_no_asks_which_part_and_naming_the_part_asks_for_its_value(baton: TestBot):
    customer = Customer(baton)
    await customer.says(FIRST)
    which = await customer.says("no")
    assert which.decision is not None and which.decision.awaiting == "correction"
    assert said(which).startswith("Sorry about that. Which part should I correct")
    part = await customer.says("the date")
    assert part.decision is not None and part.decision.awaiting == "details"
    assert part.decision.missing == ("date",) and "the date of the meeting" in said(part)
    value = await customer.says("Monday")
    assert said(value) == "Design Crit, Mon 16 Nov 2026, 14:00 PST: is that right?"
    assert customer.held() == []
    assert_delivered(customer)


async def test_an_answer_the_bot_cannot_read_is_asked_again_in_other_words_then_handed_off(
        baton: TestBot, sqlite_store: Store):
    customer = Customer(baton)
    first = await customer.says("The recording of our Weekly Sync is missing")
    assert first.decision is not None and first.decision.missing == ("date", "time")
    question = said(first)

    second = await customer.says("the one with the marketing folks")
    decision = second.decision
    assert decision is not None and not decision.escalate and decision.awaiting == "details"
    again = said(second)
    assert again != question and "like \"yesterday at 3pm\"" in again
    assert "the date of the meeting and the time it started" in again

    third = await customer.says("the usual slot, you know the one")
    decision = third.decision
    assert decision is not None and decision.escalate and decision.route == "support"
    assert "form.meeting.unreadable" in decision.rules
    assert said(third) not in (question, again) and "person from our team" in said(third)
    brief = third.brief
    assert brief is not None
    assert brief.details["meeting_name"] == "Weekly Sync" and brief.details["timezone"] == "America/Los_Angeles"
    assert brief.missing == ["date", "time"]
    assert any("could not read" in w for w in brief.why_now)
    assert "still missing: date, time" in brief.text()

    assert customer.held() == [] and await sqlite_store.held_actions(third.conversation.id) == []  # type: ignore
    assert_delivered(customer)
    card = customer.card()  # what the person taking over sees: what was gathered and what was not
    assert card is not None and card.brief == brief and card.brief.missing == ["date", "time"]
    conversation = await sqlite_store.get_conversation(third.conversation.id)  # type: ignore[union-attr]
    assert conversation is not None and conversation.state is ConversationState.escalated
    lines = await bot_lines(sqlite_store, third)
    assert len(lines) == len(set(lines)) == 3


async def test_progress_after_the_second_wording_starts_the_count_again(baton: TestBot):
    customer = Customer(baton)
    await customer.says("The recording of our Weekly Sync is missing")
    await customer.says("hmm")
    progress = await customer.says("it was on Wednesday")  # the date: progress, so the time is asked for plainly
    assert progress.decision is not None and progress.decision.missing == ("time",)
    assert not progress.decision.escalate and said(progress).startswith("So our team can look into this")
    again = await customer.says("no clue what you mean")
    assert again.decision is not None and not again.decision.escalate and "like \"at 3pm\"" in said(again)
    last = await customer.says("around half past nine")
    assert said(last) == "Weekly Sync, Wed 18 Nov 2026, 09:30 PST: is that right?"
    assert customer.held() == []
    assert_delivered(customer)


async def test_i_dont_know_hands_off_at_once_with_what_was_gathered(baton: TestBot):
    customer = Customer(baton)
    await customer.says("the notetaker missed the standup this morning")
    outcome = await customer.says("no idea what time it started, sorry")
    decision = outcome.decision
    assert decision is not None and decision.escalate and "form.meeting.unknown" in decision.rules
    assert outcome.brief is not None and outcome.brief.missing == ["time"]
    assert outcome.brief.details["meeting_name"] == "standup" and outcome.brief.details["date"] == "2026-11-20"
    assert customer.held() == []
    assert_delivered(customer)


async def test_an_unreadable_answer_to_the_read_back_is_asked_once_more_then_handed_off(baton: TestBot):
    customer = Customer(baton)
    await customer.says(FIRST)
    check = await customer.says("hmm, maybe")
    assert check.decision is not None and check.decision.awaiting == "confirm" and not check.decision.escalate
    assert said(check) == "Just to check, is this right: Design Crit, Thu 19 Nov 2026, 14:00 PST? " \
                          "A yes or a no is all I need."
    end = await customer.says("hmm, maybe")
    assert end.decision is not None and end.decision.escalate and "form.meeting.unconfirmed" in end.decision.rules
    assert end.brief is not None and end.brief.details == GATHERED
    assert any("did not confirm" in w for w in end.brief.why_now)
    assert customer.held() == []
    assert_delivered(customer)


async def test_an_unreadable_correction_is_asked_once_more_then_handed_off(baton: TestBot):
    customer = Customer(baton)
    await customer.says(FIRST)
    await customer.says("no")
    again = await customer.says("no")
    assert again.decision is not None and again.decision.awaiting == "correction" and not again.decision.escalate
    assert said(again).startswith("Sorry, I didn't catch what to change")
    assert '"Weekly Sync, yesterday at 3pm Pacific time"' in said(again)
    end = await customer.says("no!!")
    assert end.decision is not None and end.decision.escalate and "form.meeting.unreadable" in end.decision.rules
    assert customer.held() == []
    assert_delivered(customer)


@pytest.mark.parametrize("text, name", [
    ("the recording of the weekly design review from yesterday at 10am is missing", "weekly design review"),
    ("the notetaker never joined the standup yesterday at 9:30am", "standup"),
    ("our design review yesterday at 11am has no summary", "design review"),
    ("Customer Onboarding – Globex yesterday at 1pm: the transcript is cut off", "Customer Onboarding – Globex"),
    ("no recording for Q4 planning - EMEA yesterday at 4pm", "Q4 planning - EMEA"),
    ("the recording of the design review from yesterday at 2pm is missing", "design review"),
    ("the summary of 'all hands prep' yesterday at noon is wrong", "all hands prep"),
])
async def test_lowercase_and_dashed_meeting_names_are_kept_as_said(baton: TestBot, text: str, name: str):
    outcome = await Customer(baton).says(text)
    decision = outcome.decision
    assert decision is not None and decision.details.meeting_name == name
    assert decision.missing == () and said(outcome).startswith(f"{name}, Thu 19 Nov 2026, ")


@pytest.mark.parametrize("text, date, time", [
    ("the standup recording from Nov 3 at 10:30am is missing", "2026-11-03", "10:30"),
    ("the standup at noon yesterday wasn't recorded", "2026-11-19", "12:00"),
    ("the standup yesterday midday has no notes", "2026-11-19", "12:00"),
    ("the standup yesterday at 3 in the afternoon has no notes", "2026-11-19", "15:00"),
    ("the standup on Tuesday at 2.30pm has no transcript", "2026-11-17", "14:30"),
    ("the standup on Tuesday at 14h30 has no transcript", "2026-11-17", "14:30"),
    ("the standup yesterday at half past two has no transcript", "2026-11-19", "14:30"),
    ("the standup yesterday at quarter to ten has no transcript", "2026-11-19", "09:45"),
    ("the standup yesterday at quarter past 9 has no transcript", "2026-11-19", "09:15"),
    ("the standup yesterday 9ish has no transcript", "2026-11-19", "09:00"),
    ("the standup yesterday around 4 has no transcript", "2026-11-19", "16:00"),
    ("the standup yesterday at 10:30ish has no transcript", "2026-11-19", "10:30"),
    ("the standup this morning at 9 has no transcript", "2026-11-20", "09:00"),
    ("the standup yesterday around 3pm has no transcript", "2026-11-19", "15:00"),
])
async def test_time_phrasings_through_the_service(baton: TestBot, text: str, date: str, time: str):
    outcome = await Customer(baton).says(text)
    decision = outcome.decision
    assert decision is not None and decision.missing == ()
    assert (decision.details.date, decision.details.time) == (date, time)


@pytest.mark.parametrize("text, time", [
    ("the standup at noon has no recording", "12:00"),
    ("the standup at 3 in the afternoon has no recording", "15:00"),
    ("the standup at half past two has no recording", "14:30"),
    ("the standup around 4 has no recording", "16:00"),
])
async def test_a_time_alone_never_shows_a_date_the_customer_did_not_give(baton: TestBot, sqlite_store: Store,
                                                                        text: str, time: str):
    customer = Customer(baton)
    outcome = await customer.says(text)
    decision = outcome.decision
    assert decision is not None and decision.details.date is None and decision.details.time == time
    assert decision.missing == ("date",) and "the date of the meeting" in said(outcome)
    assert "Nov" not in said(outcome) and "2026" not in said(outcome)
    dated = await customer.says("it was on Wednesday")
    assert said(dated) == f"standup, Wed 18 Nov 2026, {time} PST: is that right?"


async def test_naming_the_wrong_part_asks_for_just_that_part(baton: TestBot):
    customer = Customer(baton)
    await customer.says(FIRST)
    part = await customer.says("the time is wrong")
    assert part.decision is not None and part.decision.missing == ("time",) and not part.decision.escalate
    assert "the time it started" in said(part) and "the date" not in said(part)
    fixed = await customer.says("it was 3 in the afternoon")
    assert said(fixed) == "Design Crit, Thu 19 Nov 2026, 15:00 PST: is that right?"
    assert customer.held() == []
    assert_delivered(customer)


@pytest.mark.parametrize("text, time", [
    ("the recording of the standup at noon is missing", "12:00"),
    ("the recording of the standup at 2.30pm is missing", "14:30"),
    ("the recording of the standup at 14h30 is missing", "14:30"),
    ("the recording of the standup at quarter to ten is missing", "09:45"),
])
def test_the_engine_reads_a_time_alone_and_asks_for_the_date(bot: Engine, text: str, time: str):
    decision = bot.triage(text, now=START, zone="America/Los_Angeles")
    assert decision.intent == "meeting_issue" and not decision.escalate
    details = decision.contract()["details"]
    assert details == {"meeting_name": "standup", "date": None, "time": time, "timezone": "America/Los_Angeles"}
    assert decision.missing == ("date",) and decision.reply is not None and "2026" not in decision.reply


@pytest.mark.parametrize("period", [
    "from a couple of weeks back", "last month", "sometime earlier this year", "a while back", "recently",
    "3 weeks ago", "a few days ago",
])
async def test_a_period_that_names_no_day_is_asked_about_and_never_read_back_as_a_date(
        baton: TestBot, sqlite_store: Store, period: str):
    customer = Customer(baton)
    first = await customer.says(f"the transcript of our Roadmap Review {period} is cut off")
    assert first.decision is not None and first.decision.details.date is None
    assert first.decision.missing == ("date", "time")
    timed = await customer.says("it started at 11am")
    assert timed.decision is not None and timed.decision.missing == ("date",) and timed.decision.details.time == "11:00"
    assert "Nov" not in said(timed) and "2026" not in said(timed) and "the date of the meeting" in said(timed)
    dated = await customer.says("Nov 5")
    assert said(dated) == "Roadmap Review, Thu 5 Nov 2026, 11:00 PST: is that right?"
    assert customer.held() == []
    assert_delivered(customer)
    lines = await bot_lines(sqlite_store, dated)
    assert len(lines) == len(set(lines)) == 3


async def test_a_time_said_with_a_vague_period_is_kept_and_only_the_date_is_asked_for(baton: TestBot):
    customer = Customer(baton)
    outcome = await customer.says("the notetaker never joined the Roadmap Review sometime last month, 9am")
    decision = outcome.decision
    assert decision is not None and decision.details.date is None and decision.details.time == "09:00"
    assert decision.missing == ("date",) and "2026" not in said(outcome)


@pytest.mark.parametrize("answer", [
    ":+1:", ":thumbsup:", ":white_check_mark:", ":+1::skin-tone-3:", "👌", "yep that's it", "yes correct", "correct",
    "that's right", "Yes!", "yeah looks right", "sounds good", "spot on",
])
async def test_every_way_of_saying_yes_to_the_read_back_confirms(baton: TestBot, answer: str):
    customer = Customer(baton)
    assert said(await customer.says(FIRST)) == READ_BACK
    outcome = await customer.says(answer)
    assert outcome.decision is not None and outcome.decision.escalate
    assert "form.meeting.confirmed" in outcome.decision.rules
    assert outcome.brief is not None and outcome.brief.details == GATHERED
    assert customer.held() == []
    assert_delivered(customer)


@pytest.mark.parametrize("answer", ["nope", "not quite", ":-1:", ":x:", "👎", "no that's wrong", "not exactly"])
async def test_every_way_of_saying_no_to_the_read_back_asks_which_part(baton: TestBot, answer: str):
    customer = Customer(baton)
    await customer.says(FIRST)
    outcome = await customer.says(answer)
    assert outcome.decision is not None and not outcome.decision.escalate
    assert outcome.decision.awaiting == "correction" and said(outcome).startswith("Sorry about that. Which part")
    assert customer.held() == []
    assert_delivered(customer)


@pytest.mark.parametrize("answer, part", [
    ("yes but the date is wrong", "date"), ("ok except the time", "time"),
    ("right, though the name isn't", "meeting_name"),
])
async def test_a_yes_that_goes_on_to_name_a_wrong_part_is_not_a_confirmation(baton: TestBot, answer: str, part: str):
    customer = Customer(baton)
    await customer.says(FIRST)
    outcome = await customer.says(answer)
    assert outcome.decision is not None and not outcome.decision.escalate
    assert outcome.decision.missing == (part,) and outcome.decision.awaiting == "details"
    assert customer.held() == []
    assert_delivered(customer)


async def test_a_bare_hour_after_naming_the_time_is_read_as_the_time(baton: TestBot):
    customer = Customer(baton)
    await customer.says(FIRST)
    await customer.says("no")
    fixed = await customer.says("the time was wrong, it was 4")
    assert said(fixed) == "Design Crit, Thu 19 Nov 2026, 16:00 PST: is that right?"
    assert customer.held() == []
    assert_delivered(customer)


@pytest.mark.parametrize("first, name, date", [
    ("no notes for todays ops mtg", "ops mtg", "2026-11-20"),
    ("the transcript of yesterdays town hall is cut off", "town hall", "2026-11-19"),
    ("this mornings retro has no summary", "retro", "2026-11-20"),
    ("no summary for wednesdays kickoff", "kickoff", "2026-11-18"),
    ("the recording of our one on one with Dana on thurs is missing", "one on one with Dana", "2026-11-19"),
])
async def test_day_words_without_an_apostrophe_and_meeting_words_are_read_in_the_first_message(
        baton: TestBot, first: str, name: str, date: str):
    customer = Customer(baton)
    outcome = await customer.says(first)
    decision = outcome.decision
    assert decision is not None and decision.missing == ("time",)
    assert (decision.details.meeting_name, decision.details.date) == (name, date)
    timed = await customer.says("quarter past 8")
    assert said(timed).startswith(f"{name}, ") and ", 08:15 PST: is that right?" in said(timed)
    assert customer.held() == []
    assert_delivered(customer)


@pytest.mark.parametrize("answer, date, time", [
    ("tues around 3", "2026-11-17", "15:00"), ("thurs 10am", "2026-11-19", "10:00"),
    ("wed at 2", "2026-11-18", "14:00"), ("mon", "2026-11-16", None), ("on sat", "2026-11-14", None),
    ("Tuesday last week at 1pm", "2026-11-10", "13:00"),
])
async def test_weekday_abbreviations_answer_the_question_the_first_time(baton: TestBot, answer: str, date: str,
                                                                        time: str | None):
    customer = Customer(baton)
    await customer.says("the notetaker never joined the Vendor Sync")
    outcome = await customer.says(answer)
    decision = outcome.decision
    assert decision is not None and decision.details.date == date and decision.details.time == time
    assert decision.missing == (() if time else ("time",)) and not decision.escalate
    assert customer.held() == []
    assert_delivered(customer)


async def test_a_lowercase_dashed_name_keeps_both_sides_without_the_day_and_time(baton: TestBot):
    dashed = await Customer(baton).says("the notetaker didn't join partner sync - umbrella corp thursday 11am")
    assert dashed.decision is not None and dashed.decision.details.meeting_name == "partner sync - umbrella corp"
    assert said(dashed) == "partner sync - umbrella corp, Thu 19 Nov 2026, 11:00 PST: is that right?"


async def test_a_typed_name_drops_its_article(baton: TestBot):
    customer = Customer(baton)
    await customer.says("no recording from yesterday at 3pm")
    named = await customer.says("the quarterly thing")
    assert named.decision is not None and named.decision.details.meeting_name == "quarterly thing"
    assert customer.held() == []
    assert_delivered(customer)


async def test_a_correction_of_another_field_does_not_bring_back_a_question_already_asked(
        baton: TestBot, sqlite_store: Store):
    customer = Customer(baton)
    first = await customer.says("The recording of our Weekly Sync yesterday is missing")
    assert first.decision is not None and first.decision.missing == ("time",)
    await customer.says("hmm")
    third = await customer.says("sorry, it was Wednesday actually")  # the date again, still no time
    decision = third.decision
    assert decision is not None and decision.escalate and "form.meeting.unreadable" in decision.rules
    assert third.brief is not None and third.brief.missing == ["time"] and third.brief.details["date"] == "2026-11-18"
    assert customer.held() == []
    assert_delivered(customer)
    lines = await bot_lines(sqlite_store, third)
    assert len(lines) == len(set(lines)) == 3


async def test_naming_a_wrong_part_asks_for_it_in_words_not_used_before(baton: TestBot, sqlite_store: Store):
    customer = Customer(baton)
    await customer.says("The recording of our Weekly Sync yesterday is missing")
    await customer.says("at 4pm")
    part = await customer.says("yes but the time is wrong")
    assert part.decision is not None and part.decision.missing == ("time",)
    fixed = await customer.says("4:30pm")
    assert said(fixed) == "Weekly Sync, Thu 19 Nov 2026, 16:30 PST: is that right?"
    done = await customer.says(":+1:")
    assert done.decision is not None and "form.meeting.confirmed" in done.decision.rules
    assert customer.held() == []
    assert_delivered(customer)
    lines = await bot_lines(sqlite_store, done)
    assert len(lines) == len(set(lines)) == 5
