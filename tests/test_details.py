"""Detail gathering: dates and times in the customer's zone (preferring the past), names, zones."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.details import DetailExtractor, find_meeting_name, find_when, find_zone, resolve, spoken
from bot.model import Details
from bot.policy import Policy, load_policy

LA = ZoneInfo("America/Los_Angeles")
# Monday 23 November 2026, 10:00 in Los Angeles
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=LA)
FIELDS = ["meeting_name", "date", "time", "timezone"]


@pytest.mark.parametrize("text, date, time", [
    ("the recording from yesterday at 3pm is missing", "2026-11-22", "15:00"),
    ("it was last Tuesday at 4pm", "2026-11-17", "16:00"),
    ("Nov 3 at 10:30am", "2026-11-03", "10:30"),
    ("11/18 16:45", "2026-11-18", "16:45"),
    ("this morning at 9 the notetaker never joined", "2026-11-23", "09:00"),
    ("on Friday at noon", "2026-11-20", "12:00"),
    ("Dec 3 at 9am", "2025-12-03", "09:00"),  # no year and in the future: last December
    ("3 days ago at 11:15", "2026-11-20", "11:15"),
    ("on 2026-11-19 at 15:00", "2026-11-19", "15:00"),
])
def test_relative_and_absolute_forms_resolve_in_the_past(text, date, time):
    when = find_when(text, NOW)
    assert when is not None
    assert (when.date, when.time) == (date, time)
    assert when.has_date and when.has_time


def test_a_time_later_than_now_with_no_day_is_yesterdays():
    when = resolve("at 4pm", NOW)
    assert when is not None and when.value == datetime(2026, 11, 22, 16, 0, tzinfo=LA)
    assert resolve("tomorrow at 4pm", NOW).value == datetime(2026, 11, 24, 16, 0, tzinfo=LA)  # said: kept
    for text, hour in (("at noon", 12), ("around midday", 12), ("3 in the afternoon", 15)):  # never a year back
        assert resolve(text, NOW).value == datetime(2026, 11, 22, hour, 0, tzinfo=LA), text
        assert resolve(text, NOW.replace(hour=16)).value == datetime(2026, 11, 23, hour, 0, tzinfo=LA), text


# Several zones and now-s: Los Angeles on a Monday morning; Kolkata (UTC+5:30, day-month dates) early on
# 3 November; London on the morning the clocks went forward (01:00-02:00 did not exist); New York on the
# morning the clocks went back (01:00-02:00 happened twice); Auckland just after New Year.
KOLKATA = datetime(2026, 11, 3, 9, 0, tzinfo=ZoneInfo("Asia/Kolkata"))
LONDON_SPRING = datetime(2026, 3, 29, 9, 0, tzinfo=ZoneInfo("Europe/London"))
NEW_YORK_FALL = datetime(2026, 11, 1, 8, 0, tzinfo=ZoneInfo("America/New_York"))
AUCKLAND = datetime(2027, 1, 5, 8, 0, tzinfo=ZoneInfo("Pacific/Auckland"))

PHRASINGS = [
    # (now, what the customer wrote, the date filled in or None, the time filled in or None)
    (NOW, "Nov 3 at 10:30am", "2026-11-03", "10:30"),
    (NOW, "at noon", None, "12:00"),
    (NOW, "it was midday", None, "12:00"),
    (NOW, "3 in the afternoon", None, "15:00"),
    (NOW, "2.30pm", None, "14:30"),
    (NOW, "14h30", None, "14:30"),
    (NOW, "half past two", None, "14:30"),
    (NOW, "quarter to ten", None, "09:45"),
    (NOW, "quarter past 9", None, "09:15"),
    (NOW, "9ish", None, "09:00"),
    (NOW, "around 4", None, "16:00"),
    (NOW, "10:30ish", None, "10:30"),
    (NOW, "this morning at 9", "2026-11-23", "09:00"),
    (NOW, "yesterday around 3pm", "2026-11-22", "15:00"),
    (NOW, "on Friday at noon", "2026-11-20", "12:00"),
    (NOW, "Dec 3 at 9am", "2025-12-03", "09:00"),
    (NOW, "last Tuesday at 4pm", "2026-11-17", "16:00"),
    (NOW, "Monday at 3pm", "2026-11-16", "15:00"),  # said on Monday morning: last Monday's
    (NOW, "Monday at 8am", "2026-11-23", "08:00"),  # already past today: today's
    (NOW, "twenty to four", None, "15:40"),
    (NOW, "eleven forty am", None, "11:40"),
    (NOW, "seven fifteen in the evening", None, "19:15"),
    (NOW, "the one at twenty past noon", None, "12:20"),
    (NOW, "wrong date - the 14th", "2026-11-14", None),
    (NOW, "the 30th", "2026-10-30", None),
    (NOW, "3 days ago at 11:15", "2026-11-20", "11:15"),
    (NOW, "2 hours ago", "2026-11-23", "08:00"),
    (NOW, "it was Tuesday, not Monday", "2026-11-17", None),
    (NOW, "not Monday, Tuesday", "2026-11-17", None),
    (NOW, "11/18 at 16:45", "2026-11-18", "16:45"),  # month/day where the customer's zone writes it so
    (NOW, "Friday, Nov 20 at 9am", "2026-11-20", "09:00"),
    (NOW, "from 3 to 4pm yesterday", "2026-11-22", "15:00"),
    (NOW, "the 1st of November at 9", "2026-11-01", "09:00"),
    (NOW, "last week", None, None),  # a period, not a day: no date is made up
    (NOW, "at one point the bot left", None, None),
    (NOW, "about 5 people joined at 3pm", None, "15:00"),
    (NOW, "version 2.30 of the app", None, None),
    (NOW, "please send the notes by 5pm", None, None),  # a deadline is not when the meeting started
    (NOW, "it ran from 2 until 4pm yesterday", "2026-11-22", "14:00"),
    (NOW, "we sat through it, the sun was out", None, None),
    (KOLKATA, "Nov 3 at 10:30am", "2026-11-03", "10:30"),  # today's date, though 10:30 is still ahead
    (KOLKATA, "02/11 at 4pm", "2026-11-02", "16:00"),  # day/month outside the Americas
    (KOLKATA, "at noon", None, "12:00"),
    (KOLKATA, "yesterday at half past two", "2026-11-02", "14:30"),
    (LONDON_SPRING, "yesterday around 3pm", "2026-03-28", "15:00"),
    (LONDON_SPRING, "this morning at 1:30", "2026-03-29", "01:30"),  # a skipped wall time, kept as said
    (LONDON_SPRING, "Friday at quarter past 9", "2026-03-27", "09:15"),
    (LONDON_SPRING, "at noon", None, "12:00"),
    (NEW_YORK_FALL, "this morning at 1:30", "2026-11-01", "01:30"),  # a repeated wall time, kept as said
    (NEW_YORK_FALL, "yesterday at 14h30", "2026-10-31", "14:30"),
    (AUCKLAND, "Dec 31 at 3pm", "2026-12-31", "15:00"),
    (AUCKLAND, "Sunday around 4", "2027-01-03", "16:00"),
    # Periods that name no day fill no date (the bot asks which day); the time said with one is kept.
    # A count of days is a day; "a few days" and any number of weeks are not.
    (NOW, "the sync from a few weeks back", None, None),
    (NOW, "sometime last month around 10am", None, "10:00"),
    (NOW, "it was 3 weeks ago", None, None),
    (NOW, "a week ago", None, None),
    (NOW, "recently", None, None),
    (NOW, "a while ago", None, None),
    (NOW, "earlier this year", None, None),
    (NOW, "the other day at 2pm", None, "14:00"),
    (NOW, "a few days ago", None, None),
    (NOW, "in the past few days", None, None),
    (NOW, "over the weekend", None, None),
    (NOW, "mid-October", None, None),
    (NOW, "not long ago at 4pm", None, "16:00"),
    (NOW, "Tuesday, some weeks ago", None, None),  # which Tuesday is not said
    (NOW, "a couple of days ago", "2026-11-21", None),
    (NOW, "four days ago at 9am", "2026-11-19", "09:00"),
    (NOW, "a week ago today", "2026-11-16", None),
    (NOW, "Thursday last week at 3pm", "2026-11-19", "15:00"),
    (NOW, "last week on Wed", "2026-11-18", None),
    (NOW, "several hours ago", "2026-11-23", None),  # today, at no hour said
    # Weekday abbreviations, capitalised or not; the ones that are also words only where they read as days
    (NOW, "tues at 2", "2026-11-17", "14:00"),
    (NOW, "thurs 3pm", "2026-11-19", "15:00"),
    (NOW, "thur 10am", "2026-11-19", "10:00"),
    (NOW, "tue", "2026-11-17", None),
    (NOW, "fri around noon", "2026-11-20", "12:00"),
    (NOW, "weds standup", "2026-11-18", None),
    (NOW, "mon 8am", "2026-11-23", "08:00"),
    (NOW, "wed 4pm", "2026-11-18", "16:00"),
    (NOW, "on sat", "2026-11-21", None),
    (NOW, "sun at 11", "2026-11-22", "11:00"),
    (NOW, "sat", "2026-11-21", None),
    (NOW, "we sat in the call for an hour", None, None),
    (NOW, "c'mon, it never joined", None, None),
    (NOW, "every tuesday at 10", None, "10:00"),  # a recurring meeting: which Tuesday is not said
    (NOW, "on a friday", None, None),
    (NOW, "on fridays the bot never joins", None, None),
    # Possessives without the apostrophe
    (NOW, "yesterdays sync at 3pm", "2026-11-22", "15:00"),
    (NOW, "todays standup at 9", "2026-11-23", "09:00"),
    (NOW, "this mornings call at 8", "2026-11-23", "08:00"),
    (NOW, "no notes from fridays kickoff", "2026-11-20", None),
]


@pytest.mark.parametrize("now, text, date, time", PHRASINGS)
def test_time_phrasings_read_right_in_every_zone(policy, now, text, date, time):
    zone_name = now.tzinfo.key
    details = DetailExtractor(policy).extract(text, FIELDS, now=now, default_zone=zone_name).details
    assert (details.date, details.time) == (date, time)


@pytest.mark.parametrize("text, plain", [
    ("half past two", "2:30"), ("quarter to ten", "9:45"), ("a quarter past 4pm", "16:15"), ("2.30pm", "2:30pm"),
    ("14h30", "14:30"), ("9ish", "around 9"), ("eleven forty am", "11:40 am"), ("ten after 5pm", "17:10"),
    ("nine tonight", "9 tonight"), ("half four", "4:30"), ("5 o'clock", "at 5"), ("2-3pm", "2pm"),
    ("11-1pm", "11am"), ("quarter to midnight", "23:45"),
    ("at one point", "at one point"), ("half an hour", "half an hour"), ("5 to 10 minutes", "5 to 10 minutes"),
])
def test_spoken_clock_forms_are_written_as_clock_times(text, plain):
    assert spoken(text) == plain


def test_a_date_alone_leaves_the_time_unknown_and_a_time_alone_leaves_the_date_unknown():
    day = find_when("the call yesterday", NOW)
    assert day is not None and day.has_date and not day.has_time and day.date == "2026-11-22"
    hour = find_when("it started at 3:30pm", NOW)
    assert hour is not None and hour.has_time and not hour.has_date


def test_a_stated_zone_is_kept_as_said():
    extraction = DetailExtractor(load_policy()).extract("it was yesterday 9am Eastern time", FIELDS, now=NOW)
    assert extraction.details.timezone == "America/New_York"
    assert (extraction.details.date, extraction.details.time) == ("2026-11-22", "09:00")


@pytest.mark.parametrize("text, zone", [
    ("3pm PST", "America/Los_Angeles"), ("at 10 CET", "Europe/Paris"), ("Pacific time", "America/Los_Angeles"),
    ("we're in Europe/Berlin", "Europe/Berlin"), ("UTC+2", "Etc/GMT-2"), ("London time", "Europe/London"),
])
def test_zones_customers_type(text, zone):
    found = find_zone(text)
    assert found is not None and found.name == zone


def test_no_zone_in_ordinary_words():
    assert find_zone("the pet store at 3pm") is None and find_zone("I met him") is None


@pytest.mark.parametrize("text, name", [
    ('The transcript for "Q3 Planning" is cut off', "Q3 Planning"),
    ("the recording of our Weekly Sync yesterday is missing", "Weekly Sync"),
    ("notetaker didn't join the Acme call", "Acme call"),
    ("it's a meeting called board review with the investors", "board review with the investors"),
    ("Summary for ‘Design Crit’ is wrong", "Design Crit"),
    ("the weekly design review", "weekly design review"),
    ("the standup", "standup"),
    ("our design review", "design review"),
    ("Customer Onboarding – Globex", "Customer Onboarding – Globex"),
    ("Q4 planning - EMEA", "Q4 planning - EMEA"),
    ("the recording of the design review from yesterday is missing", "design review"),
    ("the notetaker skipped sprint planning yesterday", "sprint planning"),
    ("the 1:1 with Priya has no summary", "1:1 with Priya"),
    ("our sales call - ACME renewal dropped halfway", "sales call - ACME"),
    ("Notewise never joined the team standup", "team standup"),
    ("sorry, the meeting was called Ops Sync", "Ops Sync"),
    ("no notes for todays ops mtg", "ops mtg"),
    ("the transcript from last week's all hands is empty", "all hands"),
    ("this mornings retro has no summary", "retro"),
    ("my one on one with Dana dropped", "one on one with Dana"),
    ("yesterdays town hall never got recorded", "town hall"),
    ("the notetaker skipped our client kickoff", "client kickoff"),
    ("partner sync - umbrella corp tuesday 9am", "partner sync - umbrella corp"),
    ("vendor call - initech recording is missing", "vendor call - initech"),
    ("design review - urgent", "design review"),
    ("weekly sync - audio kept cutting out", "weekly sync"),
    ("weekly sync - speakers mixed up", "weekly sync"),
])
def test_meeting_names(text, name):
    assert find_meeting_name(text) == name


@pytest.mark.parametrize("text", [
    "my recording is missing", "I use Zoom and Google Meet", "Hi, Monday at 3pm PST", "Thanks!",
    "the notetaker never joined our call", "the same meeting again", "a call I had this morning",
    "the Zoom call from yesterday", "no, it was Tuesday", "the 3pm meeting", "a mtg I had", "my 3pm mtg",
])
def test_no_name_where_there_is_none(text):
    assert find_meeting_name(text) is None


def test_a_bare_answer_fills_the_field_asked_for_and_nothing_else(policy):
    extractor = DetailExtractor(policy)
    asked = extractor.extract("acme intro", FIELDS, now=NOW, asked=("meeting_name",))
    assert asked.details.meeting_name == "acme intro"
    unasked = extractor.extract("acme intro", FIELDS, now=NOW)
    assert unasked.details.meeting_name is None
    unsure = extractor.extract("I don't remember", FIELDS, now=NOW, asked=("meeting_name",))
    assert unsure.details.meeting_name is None
    article = extractor.extract("the quarterly thing", FIELDS, now=NOW, asked=("meeting_name",))
    assert article.details.meeting_name == "quarterly thing"


@pytest.mark.parametrize("text, time", [
    ("it was 11", "11:00"), ("the time was wrong, it was 4", "16:00"), ("started at 9:45", "09:45"), ("8", "08:00"),
])
def test_a_bare_hour_answers_the_time_only_when_the_time_was_asked_for(policy, text, time):
    extractor = DetailExtractor(policy)
    assert extractor.extract(text, FIELDS, now=NOW, asked=("time",)).details.time == time
    if ":" not in text:
        assert extractor.extract(text, FIELDS, now=NOW).details.time is None
    assert extractor.extract("we were 11 people", FIELDS, now=NOW, asked=("time",)).details.time is None


def test_a_loosely_read_name_does_not_replace_one_already_given(policy):
    extractor = DetailExtractor(policy)
    known = Details(meeting_name="Design Crit")
    loose = extractor.extract("it was during our team call", FIELDS, now=NOW, known=known)
    assert loose.details.meeting_name is None
    strong = extractor.extract("sorry, it's called Ops Review", FIELDS, now=NOW, known=known)
    assert strong.details.meeting_name == "Ops Review"
    asked = extractor.extract("the weekly design review", FIELDS, now=NOW, known=known, asked=("meeting_name",))
    assert asked.details.meeting_name == "weekly design review"


def test_links_and_mentions_are_not_read_as_names_or_times(policy):
    text = "<@U0123ABC> the standup recording <https://acme.example/rec/14h30|link> is missing"
    details = DetailExtractor(policy).extract(text, FIELDS, now=NOW).details
    assert details.meeting_name == "standup" and details.time is None


def test_the_example_shown_when_asking_again(policy):
    extractor = DetailExtractor(policy)
    assert extractor.example(["date", "time"]) == "yesterday at 3pm"
    assert extractor.example(FIELDS) == "Weekly Sync, yesterday at 3pm Pacific time"
    assert extractor.example(["meeting_name"]) == "Weekly Sync"


def test_the_summary_reads_back_like_a_person_would(policy):
    details = Details(meeting_name="Weekly Sync", date="2026-11-19", time="15:00", timezone="America/Los_Angeles")
    assert DetailExtractor(policy).summary(details, FIELDS) == "Weekly Sync, Thu 19 Nov 2026, 15:00 PST"


def test_a_policy_can_declare_its_own_fields(tmp_path: Path):
    source = Path(__file__).resolve().parent.parent / "bot" / "defaults" / "policy.toml"
    text = source.read_text().replace("fields = ['meeting_name', 'date', 'time', 'timezone']",
                                      "fields = ['order_id', 'date']")
    text += "\n[fields.order_id]\nkind = 'pattern'\nlabel = 'your order number'\npattern = '\\b(ORD-\\d{4})\\b'\n"
    path = tmp_path / "policy.toml"
    path.write_text(text)
    policy: Policy = load_policy(path)
    extraction = DetailExtractor(policy).extract("order ORD-1234 from yesterday", ["order_id", "date"], now=NOW)
    assert extraction.details.model_dump()["order_id"] == "ORD-1234"
    assert extraction.details.date == "2026-11-22"
    assert Details(date="2026-11-22").missing(["order_id", "date"]) == ["order_id"]


# ---- the Duckling corpus in ../shared/eval ----

GRAIN_FORMAT = {"second": "%Y-%m-%d %H:%M:%S", "minute": "%Y-%m-%d %H:%M", "hour": "%Y-%m-%d %H", "day": "%Y-%m-%d",
                "week": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}


def score_datetimes(path: Path) -> dict[str, tuple[int, int]]:
    """Rows resolved right at their grain. Direction-sensitive rows count as right when Baton gives
    either Duckling's (next) reading or the most recent past one (a day, a week, a month or a year
    earlier: "the 1st" said on 12 February is 1 February)."""
    counts = {"unambiguous": [0, 0], "direction_sensitive": [0, 0]}
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        now = datetime.fromisoformat(row["ref_now"])
        expected = datetime.fromisoformat(row.get("value") or row["from"])
        fmt = GRAIN_FORMAT[row["grain"]]
        when = resolve(row["text"], now)
        accepted = {expected.strftime(fmt)}
        if row["direction_sensitive"]:
            accepted |= {(expected - timedelta(days=d)).strftime(fmt) for d in (1, 7)}
            month_back = expected.replace(day=1) - timedelta(days=1)
            if expected.day <= month_back.day:
                accepted.add(month_back.replace(day=expected.day).strftime(fmt))
            try:
                accepted.add(expected.replace(year=expected.year - 1).strftime(fmt))
            except ValueError:
                pass
        key = "direction_sensitive" if row["direction_sensitive"] else "unambiguous"
        counts[key][1] += 1
        counts[key][0] += when is not None and when.value.strftime(fmt) in accepted
    return {k: (v[0], v[1]) for k, v in counts.items()}


def test_dev_datetimes_resolve(shared_eval):
    scores = score_datetimes(shared_eval / "dev_datetimes.jsonl")
    right = sum(r for r, _ in scores.values())
    total = sum(t for _, t in scores.values())
    assert total > 0 and right / total >= 0.95, scores
    right, total = scores["direction_sensitive"]
    assert total > 0 and right / total >= 0.95, scores
