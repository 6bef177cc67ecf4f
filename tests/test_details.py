"""Detail gathering: dates and times in the customer's zone (preferring the past), names, zones."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.details import DetailExtractor, find_meeting_name, find_when, find_zone, resolve
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
    when = resolve("at 2pm", NOW)
    assert when is not None and when.value == datetime(2026, 11, 22, 14, 0, tzinfo=LA)
    assert resolve("tomorrow at 2pm", NOW).value == datetime(2026, 11, 24, 14, 0, tzinfo=LA)  # said: kept


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
])
def test_meeting_names(text, name):
    assert find_meeting_name(text) == name


@pytest.mark.parametrize("text", [
    "my recording is missing", "I use Zoom and Google Meet", "Hi, Monday at 3pm PST", "Thanks!",
])
def test_no_name_where_there_is_none(text):
    assert find_meeting_name(text) is None


def test_a_bare_answer_fills_the_field_asked_for_and_nothing_else(policy):
    extractor = DetailExtractor(policy)
    asked = extractor.extract("Team retro", FIELDS, now=NOW, asked=("meeting_name",))
    assert asked.details.meeting_name == "Team retro"
    unasked = extractor.extract("team retro", FIELDS, now=NOW)
    assert unasked.details.meeting_name is None
    unsure = extractor.extract("I don't remember", FIELDS, now=NOW, asked=("meeting_name",))
    assert unsure.details.meeting_name is None


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
    either Duckling's (next) reading or the most recent past one (a day, a week or a year earlier)."""
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
    right, total = scores["unambiguous"]
    assert total > 0 and right / total >= 0.95, scores
    right, total = scores["direction_sensitive"]
    assert right / total >= 0.80, scores  # a floor against regressions; measured 58/70 when written
