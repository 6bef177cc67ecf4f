"""Structured-detail gathering: the meeting's name, date, time and time zone from free text.

Dates and times are read in the customer's time zone, in two passes. The quick pass (compiled
regexes, below "the quick pass") reads the forms support messages use: spoken and regional clock
times ("half past two", "quarter to ten", "2.30pm", "14h30", "9ish", "noon"), days ("yesterday",
"this morning", "Tuesday", "Nov 3", "the 14th", "3 days ago", ISO and numeric dates). Only what it
leaves unread and looks like a date (a month, "week", "ago", a numeric form) goes to dateparser,
after a few support-chat forms it misses are rewritten ("nine tonight" -> "today 21:00", "a couple
of hours" -> "2 hours").

A support message is about something that already happened, so a time, weekday or date said without
a year or a direction word means its most recent past occurrence: a time alone is today's if it has
passed, else yesterday's ("at 4pm" said at 10am is yesterday's); a weekday is the last one (today's if
its time has passed); "Dec 3" said in November is last December's, "Nov 3" said on 3 November today's.
A date is only ever filled in when the customer named a day: a time alone fills the time and leaves
the date to be asked for, so the read-back never shows a date the customer did not give. Nor does a
period that names no day: "a few weeks ago", "2 weeks ago", "last month", "last week", "recently", "a
while back", "earlier this year", "mid-October" fill no date, and a bare weekday said with one is not
taken to be the most recent one. A count of days is a day ("2 days ago", "a couple of days ago"); "a
few days ago" is not, and "a few hours ago" is today at no hour said. "Tuesday last week" is a day.

Weekday abbreviations are read lowercase too ("tues", "thurs", "fri"); those that are also words
("sat", "sun", "wed", "mon") only after a direction word, before a time, or as the whole answer ("on
sat", "wed 4pm", "sun"). "Every Tuesday" and "on Fridays" are no one day. Day words are read in their
possessive with or without the apostrophe ("yesterdays standup", "this mornings call", "fridays
kickoff").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from bot.model import Details
from bot.policy import Policy, zone
from bot.text import plain

Grain = Literal["second", "minute", "hour", "day", "week", "month", "year"]
_GRAINS: dict[str, Grain] = {"day": "day", "week": "week", "month": "month", "year": "year"}

# ---- time zones ----

#: Zone names customers type, to IANA zones. Abbreviations match case-sensitively ("ET", not "et").
ZONE_ABBREVIATIONS = {
    "PST": "America/Los_Angeles", "PDT": "America/Los_Angeles", "PT": "America/Los_Angeles",
    "MST": "America/Denver", "MDT": "America/Denver", "MT": "America/Denver",
    "CST": "America/Chicago", "CDT": "America/Chicago", "CT": "America/Chicago",
    "EST": "America/New_York", "EDT": "America/New_York", "ET": "America/New_York",
    "GMT": "Etc/UTC", "UTC": "Etc/UTC", "BST": "Europe/London", "WET": "Europe/Lisbon",
    "CET": "Europe/Paris", "CEST": "Europe/Paris", "EET": "Europe/Athens", "EEST": "Europe/Athens",
    "IST": "Asia/Kolkata", "SGT": "Asia/Singapore", "JST": "Asia/Tokyo", "KST": "Asia/Seoul",
    "AEST": "Australia/Sydney", "AEDT": "Australia/Sydney", "NZST": "Pacific/Auckland", "NZDT": "Pacific/Auckland",
}
ZONE_WORDS = {
    "pacific": "America/Los_Angeles", "mountain": "America/Denver", "central": "America/Chicago",
    "eastern": "America/New_York", "london": "Europe/London", "uk": "Europe/London", "paris": "Europe/Paris",
    "berlin": "Europe/Berlin", "amsterdam": "Europe/Amsterdam", "madrid": "Europe/Madrid", "india": "Asia/Kolkata",
    "tokyo": "Asia/Tokyo", "sydney": "Australia/Sydney", "singapore": "Asia/Singapore", "new york": "America/New_York",
    "chicago": "America/Chicago", "denver": "America/Denver", "los angeles": "America/Los_Angeles",
    "toronto": "America/Toronto", "sao paulo": "America/Sao_Paulo", "dubai": "Asia/Dubai",
}
_ABBREVIATION = re.compile(r"(?<![\w/])(" + "|".join(sorted(ZONE_ABBREVIATIONS, key=len, reverse=True)) + r")(?![\w/])")
_ZONE_WORD = re.compile(r"\b(" + "|".join(sorted(ZONE_WORDS, key=len, reverse=True)) + r")(?:\s+(?:standard|daylight))?"
                        r"\s+time\b", re.I)
_IANA = re.compile(r"\b([A-Z][A-Za-z_]+/[A-Z][A-Za-z_]+(?:/[A-Z][A-Za-z_]+)?)\b")
_OFFSET = re.compile(r"\b(?:UTC|GMT)\s*([+-−])\s*(\d{1,2})(?::?00)?\b", re.I)


@dataclass(frozen=True)
class ZoneMention:
    name: str
    """The IANA zone."""
    span: tuple[int, int]


def find_zone(text: str) -> ZoneMention | None:
    """The time zone the customer named, if any ("3pm PST", "Pacific time", "Europe/Berlin", "UTC+2")."""
    if m := _OFFSET.search(text):
        hours = int(m.group(2))
        if hours <= 14:
            sign = "-" if m.group(1) == "+" else "+"  # Etc/GMT signs are inverted
            return ZoneMention("Etc/UTC" if hours == 0 else f"Etc/GMT{sign}{hours}", m.span())
    if m := _IANA.search(text):
        try:
            zone(m.group(1))
            return ZoneMention(m.group(1), m.span())
        except ValueError:
            pass
    if m := _ZONE_WORD.search(text):
        return ZoneMention(ZONE_WORDS[m.group(1).lower()], m.span())
    if m := _ABBREVIATION.search(text):
        return ZoneMention(ZONE_ABBREVIATIONS[m.group(1)], m.span())
    return None


def zone_label(name: str, at: datetime | None = None) -> str:
    """A short label for a zone at a moment: "PST", "CET"; the IANA name when it has no abbreviation."""
    tz = ZoneInfo(name)
    abbreviation = (at or datetime.now(tz)).astimezone(tz).tzname() or name
    return name if abbreviation[0] in "+-" else abbreviation


# ---- dates and times ----

_NUMBERS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split())}
_ORDINALS = {w: str(i) for i, w in enumerate(
    "zeroth first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
    "fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth".split())}
_MONTH = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"  # noqa: E501
_TH = r"(?:st|nd|rd|th)?"
_WEEKDAY = r"(?:mon|tues?|wed(?:nes)?|thu(?:rs?)?|fri|sat(?:ur)?|sun)(?:day)?s?"

#: Parts of the day: (first hour, whether a bare hour in it is pm).
PARTS_OF_DAY: dict[str, tuple[int, bool]] = {
    "late tonight": (21, True), "late night": (21, True), "tonight": (18, True), "night": (18, True),
    "evening": (18, True), "afternoon": (12, True), "lunch": (12, True), "lunchtime": (12, True),
    "noon": (12, True), "midday": (12, True), "morning": (4, False), "midnight": (0, False),
}
_PART = re.compile(r"\b(?:(this|today|tomorrow|yesterday)\s+)?(?:at\s+|in\s+the\s+|early\s+)?"
                   r"(late\s+tonight|late\s+night|tonight|"
                   r"evening|afternoon|lunchtime|lunch|noon|midday|morning|midnight|night)(?:ish)?\b", re.I)
_BARE_HOUR = re.compile(r"(?<![\d:/.-])(?:at\s+)?(\d{1,2})(?::(\d{2}))?(?!\s*(?:am|pm|a\.m|p\.m|[:/.\d-]|h\b|"
                        r"hours?|mins?|minutes?|days?|weeks?|months?|years?|st\b|nd\b|rd\b|th\b))", re.I)
_REWRITES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b(?:about|around|approximately|roughly|ish)\s+", re.I), ""),
    (re.compile(r"\ba\s+quarter\s+(?:of\s+)?an?\s+hour\b|\bquarter\s+of\s+an\s+hour\b", re.I), "15 minutes"),
    (re.compile(r"\bhalf\s+an\s+hour\b|\ba\s+half\s+hour\b", re.I), "30 minutes"),
    (re.compile(r"\b(?:a\s+)?couple(?:\s+of)?\s+(?=\w)", re.I), "2 "),
    (re.compile(r"\b(?:a\s+)?few\s+(?=\w)", re.I), "3 "),
    (re.compile(r"\byrs?\b", re.I), "year"),
    (re.compile(r"\b(\d{1,2})(" + _MONTH + r")\b", re.I), r"\1 \2"),
    (re.compile(r"\b(?:a|one)\s+(sec|second|minute|hour|day|week|month|year)\b", re.I), r"1 \1"),
    # a range means its start: "1-2pm", "between 8:15 and 9:00", "from 4 to 6 May", "Sep 2nd - 5th"
    (re.compile(r"\b(\d{1,2}(?::\d{2})?)\s*(?:-|–|to)\s*\d{1,2}(?::\d{2})?\s*(am|pm)\b", re.I), r"\1\2"),
    (re.compile(r"\b(\d{1,2}:\d{2})\s*(?:-|–)\s*\d{1,2}:\d{2}\b", re.I), r"\1"),
    (re.compile(r"\bbetween\s+(\S+)\s+and\s+\S+", re.I), r"\1"),
    (re.compile(r"\b(?:from\s+)?(\d{1,2})" + _TH + r"\s*(?:-|–|to)\s*\d{1,2}" + _TH + r"\s+(" + _MONTH + r")\b", re.I),
     r"\1 \2"),
    (re.compile(r"\b(" + _MONTH + r")\s+(\d{1,2})" + _TH + r"\s*(?:-|–|to)\s*\d{1,2}" + _TH + r"\b", re.I), r"\1 \2"),
    (re.compile(r"\b(?:early|beginning\s+of|start\s+of)\s+(" + _MONTH + r")\b", re.I), r"\1 1"),
    (re.compile(r"\bmid(?:-|\s+)(" + _MONTH + r")\b", re.I), r"\1 11"),
    (re.compile(r"\b(?:late|end\s+of)\s+(" + _MONTH + r")\b", re.I), r"\1 21"),
    (re.compile(r"\bafter\s+lunch\b", re.I), "13:00"),
]
_FUTURE = re.compile(r"\b(?:tomorrow|next|from\s+now|coming|following|later|upcoming|tonight)\b|\bin\s+(?:\d|an?\b)",
                     re.I)
_TODAY = re.compile(r"\b(?:today|tonight|this\s+(?:morning|afternoon|evening))\b", re.I)
_RELATIVE = re.compile(r"\bago\b|\bfrom\s+now\b|\bin\s+(?:\d|an?\b)", re.I)
_PAST = re.compile(r"\b(?:yesterday|last|ago|past|previous|earlier)\b", re.I)
_HAS_DATE = re.compile(r"\b(?:today|yesterday|tomorrow|tonight|ago|" + _MONTH + r"|" + _WEEKDAY +
                       r"|week|month|year)\b"
                       r"|\d{1,4}[/-]\d{1,2}|\b\d{4}\b", re.I)
_HAS_YEAR = re.compile(r"\b(?:19|20)\d{2}\b|\d{1,2}/\d{1,2}/\d{2,4}|\b" + _MONTH + r"\.?\s+\d{1,2}" + _TH
                       + r",?\s+\d{2}\b|\b\d{1,2}" + _TH + r"\s+" + _MONTH + r"\s+\d{2}\b", re.I)
_WEEKDAY_ONLY = re.compile(r"^\s*(?:on\s+)?(?:last\s+)?" + _WEEKDAY + r"\b", re.I)
_NOW = re.compile(r"^\s*(?:at the moment|right now|now|atm|just now)\s*$", re.I)
_DEADLINE = re.compile(r"^\s*by\s+\S", re.I)


@dataclass(frozen=True)
class When:
    """A resolved date/time in the customer's zone, with what the customer actually said."""

    value: datetime
    grain: Grain
    has_date: bool
    has_time: bool
    text: str
    """The phrase it came from."""

    @property
    def date(self) -> str:
        return self.value.date().isoformat()

    @property
    def time(self) -> str:
        return self.value.strftime("%H:%M")


def _dateparser_settings(now: datetime, prefer: str) -> dict[str, Any]:
    return {"RELATIVE_BASE": now.replace(tzinfo=None), "PREFER_DATES_FROM": prefer,
            "RETURN_TIME_AS_PERIOD": True, "RETURN_AS_TIMEZONE_AWARE": False, "STRICT_PARSING": False}


def _parser(now: datetime) -> Any:
    from dateparser.date import DateDataParser  # imported on first use: its start-up is ~0.2 s

    return DateDataParser(languages=["en"], settings=_dateparser_settings(now, "current_period"))


def _normalise(phrase: str) -> tuple[str, int | None, bool]:
    """Rewrite support-chat forms dateparser misses. Returns (text, hour implied by a part of the
    day or None, whether the time of day was said exactly)."""
    text = phrase.strip()
    for pattern, repl in _REWRITES:
        text = pattern.sub(repl, text)
    text = re.sub(r"\b(" + "|".join(_NUMBERS) + r")\b(?=\s+(?:tonight|this|in the|tomorrow|today|yesterday|o.?clock|"
                  r"am|pm))", lambda m: _NUMBERS[m.group(1).lower()], text, flags=re.I)
    text = re.sub(r"\b(" + _MONTH + r")\s+(" + "|".join(_ORDINALS) + r")\b",
                  lambda m: f"{m.group(1)} {_ORDINALS[m.group(2).lower()]}", text, flags=re.I)
    text = re.sub(r"(\d{1,2})\s*o.?clock\b", r"\1:00", text, flags=re.I)
    text = re.sub(r"^(\d{1,2})\s+(today|tomorrow|yesterday)\b", r"\2 at \1", text, flags=re.I)
    text = re.sub(r"\b" + _WEEKDAY + r",?\s+(?=" + _MONTH + r"\b|\d{1,2}(?:st|nd|rd|th)?\s+" + _MONTH + r")", "", text,
                  flags=re.I)
    part = _PART.search(text)
    if part is None:
        # "at 5" with no am/pm and no part of the day: read it as a working-hours time.
        bare = re.search(r"\bat\s+(\d{1,2})(?::(\d{2}))?\b(?!\s*(?:am|pm|a\.m|p\.m|[:/.\d]))", text, re.I)
        if bare:
            hour = int(bare.group(1)) % 24
            hour = hour + 12 if 1 <= hour <= 7 else hour
            text = text[:bare.start()] + f"at {hour:02d}:{bare.group(2) or '00'}" + text[bare.end():]
        return text, None, True
    name = re.sub(r"\s+", " ", part.group(2).lower())
    first_hour, pm = PARTS_OF_DAY[name]
    rest = (text[:part.start()] + " " + text[part.end():]).strip()
    day_word = (part.group(1) or "").lower()
    if not day_word and (other := re.search(r"\b(today|tomorrow|yesterday)\b", rest, re.I)):
        day_word = other.group(1).lower()
        rest = (rest[:other.start()] + " " + rest[other.end():]).strip()
    day = "today" if day_word in ("", "this", "today") or name in ("tonight", "late tonight") else day_word
    if day_word == "" and _HAS_DATE.search(rest):
        day = ""
    if name in ("noon", "midday", "midnight"):
        return f"{rest} {day} {first_hour:02d}:00".strip(), None, True
    bare = _BARE_HOUR.search(rest)
    explicit = re.search(r"\d{1,2}(?::\d{2})?\s*(?:am|pm|a\.m\.?|p\.m\.?)", rest, re.I)
    if explicit:
        return f"{rest} {day}".strip(), None, True
    if bare and int(bare.group(1)) <= 24:
        hour = int(bare.group(1))
        if pm and hour < 12:
            hour += 12
        rest = (rest[:bare.start()] + " " + rest[bare.end():]).strip()
        return f"{rest} {day} {hour:02d}:{bare.group(2) or '00'}".strip(), None, True
    return f"{rest} {day}".strip(), first_hour, False


def _resolve_slow(phrase: str, now: datetime, *, prefer: Literal["past", "future"] = "past") -> When | None:
    """The dateparser reading of a phrase the quick pass does not cover (periods, ranges, unusual forms)."""
    tz = now.tzinfo
    if _NOW.match(phrase) or _DEADLINE.match(phrase):
        # "by Friday", "by 5pm": a deadline runs from now.
        return When(now, "second", True, True, phrase)
    stated_zone = find_zone(phrase)
    if stated_zone is not None:
        phrase_wo_zone = (phrase[:stated_zone.span[0]] + phrase[stated_zone.span[1]:]).strip()
        local = _resolve_slow(phrase_wo_zone, now.astimezone(ZoneInfo(stated_zone.name)), prefer=prefer)
        if local is None:
            return None
        return When(local.value.astimezone(tz), local.grain, local.has_date, local.has_time, phrase)
    text, part_hour, exact = _normalise(phrase)
    if named := _period(text, now):
        start, named_grain = named
        return When(start, named_grain, True, named_grain in ("hour", "minute", "second"), phrase)
    data = _parser(now).get_date_data(text) if text else None
    if data is None or data.date_obj is None:
        data = _search(text, now)
        if data is None:
            return None
    naive: datetime = data.date_obj
    period = data.period or "day"
    has_time = period == "time" or part_hour is not None
    has_date = bool(_HAS_DATE.search(text))
    grain: Grain = "minute" if period == "time" else _GRAINS.get(period, "day")
    if part_hour is not None:
        naive = naive.replace(hour=part_hour, minute=0, second=0)
        grain = "hour"
    elif period == "time" and exact and naive.second == 0 and naive.minute == 0:
        grain = "hour" if not re.search(r"\d:\d\d", text) else "minute"
    if period == "day" and not has_time and not _RELATIVE.search(text):
        naive = naive.replace(hour=0, minute=0, second=0, microsecond=0)
    value = naive.replace(tzinfo=tz)
    future = _FUTURE.search(phrase) or _FUTURE.search(text) or _TODAY.search(phrase)
    if prefer == "past" and not future and value > now + timedelta(minutes=1):
        value = _most_recent_past(value, phrase, text, has_date=has_date)
    value = _weekday_consistent(value, phrase)
    return When(value, grain, has_date or not has_time, has_time and not (part_hour is not None and not exact), phrase)


def _search(text: str, now: datetime) -> Any:
    from dateparser.search import search_dates

    found = search_dates(text, languages=["en"], settings=_dateparser_settings(now, "current_period"))
    if not found:
        return None
    substring = found[0][0]
    return _parser(now).get_date_data(substring)


def _most_recent_past(value: datetime, phrase: str, text: str, *, has_date: bool) -> datetime:
    """The latest occurrence of ``value`` that is not after ``now``, for phrases that name no year."""
    if _HAS_YEAR.search(phrase) or _PAST.search(phrase):
        return value
    if not has_date:
        return value - timedelta(days=1)
    if _WEEKDAY_ONLY.match(text):
        return value - timedelta(days=7)
    try:
        return value.replace(year=value.year - 1)
    except ValueError:  # 29 February
        return value.replace(year=value.year - 1, day=28)


_WEEKDAY_NUMBER = {w: i for i, w in enumerate(["mon", "tue", "wed", "thu", "fri", "sat", "sun"])}


def _weekday_consistent(value: datetime, phrase: str) -> datetime:
    """"Friday, Mar 6" with no year: pick the nearest year in which Mar 6 is a Friday."""
    m = re.search(r"\b(" + _WEEKDAY + r")\b.*?\b(" + _MONTH + r")\b|\b(" + _MONTH + r")\b.*?\b(" + _WEEKDAY + r")\b",
                  phrase, re.I)
    if not m or _HAS_YEAR.search(phrase):
        return value
    day_name = (m.group(1) or m.group(4))[:3].lower()
    wanted = _WEEKDAY_NUMBER.get(day_name)
    if wanted is None or value.weekday() == wanted:
        return value
    for delta in (1, -1, 2, -2):
        try:
            candidate = value.replace(year=value.year + delta)
        except ValueError:
            continue
        if candidate.weekday() == wanted:
            return candidate
    return value


# ---- periods dateparser does not know: weeks, "beginning of", "second Friday of", "past three weeks" ----

_THIS = {"this": 0, "current": 0, "the": 0, "": 0, "last": -1, "past": -1, "previous": -1, "next": 1, "coming": 1,
         "following": 1}
_SHIFT = r"(this|current|last|past|previous|next|coming|following|the)?\s*"
_UNIT_PERIOD = re.compile(r"^(?:(beginning|start|end|rest|all)\s+(?:of\s+)?)?(?:the\s+)?" + _SHIFT +
                          r"(week-?end|weekend|week|month|year)$", re.I)
_COUNT_PERIOD = re.compile(r"^(last|past|next)\s+(\d+)\s+(days?|weeks?|months?|years?)$", re.I)
_NTH_WEEKDAY = re.compile(r"^(?:the\s+)?(\d+|last)\s+(" + _WEEKDAY + r")\s+of\s+(?:the\s+)?" + _SHIFT + r"month$", re.I)
_WEEKDAY_OF = re.compile(r"^(" + _WEEKDAY + r")\s+(?:of\s+)?" + _SHIFT + r"week$", re.I)
_DAY_OF_MONTH = re.compile(r"^(?:the\s+)?(\d{1,2})(?:st|nd|rd|th)?\s+of\s+(?:the\s+)?" + _SHIFT + r"month$", re.I)
_WEEK_OF_MONTH = re.compile(r"^(?:the\s+)?(\d|last)\s+week\s+of\s+(" + _MONTH + r")\s+(\d{4})$", re.I)
_EDGE_OF_YEAR = re.compile(r"^(beginning|start|end)\s+of\s+(\d{4})$", re.I)
_NTH_WEEKDAY_FROM_NOW = re.compile(r"^(\d+)\s+(" + _WEEKDAY + r")\s+from\s+now$", re.I)


def _midnight(d: date, tz: Any) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=tz)


def _month_start(d: date, shift: int) -> date:
    index = d.year * 12 + d.month - 1 + shift
    return date(index // 12, index % 12 + 1, 1)


def _period(text: str, now: datetime) -> tuple[datetime, Grain] | None:
    """Start of a named period, as Duckling reads it (week = Monday; "end of the week" = Friday)."""
    text = re.sub(r"\s+", " ", text.strip().lower())
    text = re.sub(r"\b(" + "|".join(_ORDINALS) + r")\b", lambda m: _ORDINALS[m.group(1)], text)
    text = re.sub(r"\b(" + "|".join(_NUMBERS) + r")\b", lambda m: _NUMBERS[m.group(1)], text)
    tz, today = now.tzinfo, now.date()
    monday = today - timedelta(days=today.weekday())
    if m := _UNIT_PERIOD.match(text):
        edge, shift, unit = (m.group(1) or ""), _THIS[m.group(2) or ""], m.group(3).replace("-", "")
        if unit in ("week", "weekend"):
            start = monday + timedelta(weeks=shift)
            if unit == "weekend":
                return _midnight(start + timedelta(days=4), tz).replace(hour=18), "hour"
            day = {"": start, "all": start, "beginning": start, "start": start,
                   "end": start + timedelta(days=4), "rest": today}[edge]
            return _midnight(day, tz), "week" if edge == "" else "day"
        if unit == "month":
            first = _month_start(today, shift)
            day = {"": first, "all": first, "beginning": first, "start": first, "rest": today,
                   "end": first.replace(day=21)}[edge]
            return _midnight(day, tz), "month" if edge == "" else "day"
        year = today.year + shift
        month = {"": 1, "all": 1, "beginning": 1, "start": 1, "end": 9, "rest": today.month}[edge]
        return _midnight(date(year, month, 1), tz), "year" if edge == "" else "month"
    if m := _COUNT_PERIOD.match(text):
        direction, count, unit = m.group(1), int(m.group(2)), m.group(3).rstrip("s")
        sign = 1 if direction == "next" else -1
        if unit == "day":
            return _midnight(today + timedelta(days=1 if sign > 0 else -count), tz), "day"
        if unit == "week":
            return _midnight(monday + timedelta(weeks=1 if sign > 0 else -count), tz), "week"
        if unit == "month":
            return _midnight(_month_start(today, 1 if sign > 0 else -count), tz), "month"
        return _midnight(date(today.year + (1 if sign > 0 else -count), 1, 1), tz), "year"
    if m := _NTH_WEEKDAY.match(text):
        first = _month_start(today, _THIS[m.group(3) or ""])
        wanted = _WEEKDAY_NUMBER[m.group(2)[:3]]
        day = first + timedelta(days=(wanted - first.weekday()) % 7)
        if m.group(1) == "last":
            while (day + timedelta(weeks=1)).month == first.month:
                day += timedelta(weeks=1)
        else:
            day += timedelta(weeks=int(m.group(1)) - 1)
        return _midnight(day, tz), "day"
    if m := _WEEKDAY_OF.match(text):
        start = monday + timedelta(weeks=_THIS[m.group(2) or ""])
        return _midnight(start + timedelta(days=_WEEKDAY_NUMBER[m.group(1)[:3]]), tz), "day"
    if m := _DAY_OF_MONTH.match(text):
        try:
            return _midnight(_month_start(today, _THIS[m.group(2) or ""]).replace(day=int(m.group(1))), tz), "day"
        except ValueError:
            return None
    if m := _WEEK_OF_MONTH.match(text):
        month = _month_index(m.group(2))
        first = date(int(m.group(3)), month, 1)
        mondays = [first + timedelta(days=(7 - first.weekday()) % 7 + 7 * i) for i in range(5)]
        full = [d for d in mondays if (d + timedelta(days=6)).month == month]
        pick = full[-1] if m.group(1) == "last" else full[int(m.group(1)) - 1] if int(m.group(1)) <= len(full) else None
        return (_midnight(pick, tz), "week") if pick else None
    if m := _EDGE_OF_YEAR.match(text):
        return _midnight(date(int(m.group(2)), 1 if m.group(1) != "end" else 9, 1), tz), "month"
    if m := _NTH_WEEKDAY_FROM_NOW.match(text):
        wanted = _WEEKDAY_NUMBER[m.group(2)[:3]]
        ahead = (wanted - today.weekday()) % 7 or 7
        return _midnight(today + timedelta(days=ahead + 7 * (int(m.group(1)) - 1)), tz), "day"
    return None


def _month_index(name: str) -> int:
    months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    return months.index(name[:3].lower()) + 1


# ---- finding the phrases in a message ----

_CANDIDATE = re.compile(
    r"(?:\b(?:today|yesterday|tomorrow|tonight|this|last|next|on|at|in|from|since|by)\s+)?"
    r"(?:\d{1,2}[/.-]\d{1,2}(?:[/.-]\d{2,4})?|\d{4}-\d{1,2}-\d{1,2}|" + _MONTH + r"\.?\s+\d{1,2}(?:st|nd|rd|th)?"
    r"(?:,?\s+\d{4})?|\d{1,2}(?:st|nd|rd|th)?\s+(?:of\s+)?" + _MONTH + r"(?:\s+\d{4})?|" + _WEEKDAY +
    r"\b|today|yesterday|tonight|(?:this|yesterday|tomorrow)\s+(?:morning|afternoon|evening)|"
    r"\d+\s+(?:days?|weeks?|hours?)\s+ago|last\s+week|"
    r"\d{1,2}(?::\d{2})?\s*(?:am|pm|a\.m\.|p\.m\.)|\d{1,2}:\d{2}|at\s+\d{1,2}(?::\d{2})?|noon|midnight)"
    r"(?:\s*(?:at|@|,)?\s*(?:\d{1,2}(?::\d{2})?\s*(?:am|pm|a\.m\.|p\.m\.)?|noon|midnight|(?:this|in the)\s+"
    r"(?:morning|afternoon|evening)|morning|afternoon|evening|tonight))*", re.I)


def _find_when_slow(text: str, now: datetime) -> When | None:
    """The dateparser reading of a message: every candidate phrase resolved, date and time merged."""
    date_part: When | None = None
    time_part: When | None = None
    for m in _CANDIDATE.finditer(text):
        phrase = m.group(0).strip(" ,")
        tail = text[m.end():m.end() + 24]
        if zone_match := find_zone(tail):
            if zone_match.span[0] <= 2:
                phrase = phrase + " " + tail[:zone_match.span[1]].strip()
        if re.fullmatch(r"(?i)(?:on|at|in|from|since|by|this|last|next)\s*", phrase):
            continue
        when = _resolve_slow(phrase, now)
        if when is None:
            continue
        if when.has_date and date_part is None and _HAS_DATE.search(phrase):
            date_part = when
        if when.has_time and time_part is None:
            time_part = when
    if date_part is None and time_part is None:
        return None
    if time_part is None:
        assert date_part is not None
        return date_part
    if date_part is None or date_part is time_part:
        return time_part
    combined = datetime.combine(date_part.value.date(), time_part.value.timetz())
    return When(combined, time_part.grain, True, True, f"{date_part.text} {time_part.text}")


# ---- the quick pass: the forms support messages use, read with compiled regexes ----
#
# Spoken and regional clock forms are first written as plain clock times ("half past two" -> "2:30",
# "quarter to ten" -> "9:45", "2.30pm" -> "2:30pm", "14h30" -> "14:30", "9ish" -> "around 9", "noon"
# stays a word the clock reader knows). The reader then finds one date (today, yesterday, a weekday,
# "Nov 3", "the 14th", "3 days ago", an ISO or numeric date) and one clock time, and resolves them
# to the most recent past occurrence unless a direction word or a year says otherwise. dateparser is
# only asked about what this pass leaves unread.

_HOUR_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split()) if i}
_MINUTE_WORDS = {"oh five": 5, "five": 5, "ten": 10, "fifteen": 15, "twenty": 20, "twenty five": 25, "thirty": 30,
                 "thirty five": 35, "forty": 40, "forty five": 45, "fifty": 50, "fifty five": 55}
_HOUR_W = r"(?:" + "|".join(sorted(_HOUR_WORDS, key=len, reverse=True)) + r")"
_MINUTE_W = r"(?:" + "|".join(w.replace(" ", r"[\s-]") for w in sorted(_MINUTE_WORDS, key=len, reverse=True)) + r")"
_AMPM = r"(?:[ap]\.?\s?m\.?(?![a-z]))"
_LEAD = r"(?:at|@|around|about|approx(?:\.|imately)?|roughly|circa|by|from|since|until|till|til|before|after|between)"
_DAY_CONTEXT = (r"(?:in\s+the\s+(?:morning|afternoon|evening)|at\s+night|tonight|this\s+(?:morning|afternoon|evening)"
                r"|(?:today|tomorrow|yesterday)(?:\s+(?:morning|afternoon|evening|night))?)\b")
#: Words after a number that make it a count, not a clock time ("at 5 people", "around 3 hours").
_NOT_CLOCK_AFTER = re.compile(
    r"\s*(?:%|percent|x\b|people|persons?|users?|members?|attendees?|participants?|seats?|licen[cs]es?|times?|"
    r"secs?|seconds?|mins?|minutes?|hrs?|hours?|days?|weeks?|months?|years?|meetings?|calls?|recordings?|of\b|"
    r"out\b|gb\b|mb\b|st\b|nd\b|rd\b|th\b|" + _MONTH + r"\b)", re.I)

_ISH = re.compile(r"\b(\d{1,2}(?::\d{2})?)\s*-?ish\b", re.I)
_H_FORM = re.compile(r"\b([01]?\d|2[0-3])h([0-5]\d)\b|\b(" + _LEAD + r")\s+([01]?\d|2[0-3])h\b", re.I)
_DOT_TIME = re.compile(r"\b(\d{1,2})\.([0-5]\d)\s*(" + _AMPM + r")|\b(" + _LEAD + r")\s+(\d{1,2})\.([0-5]\d)\b(?!\.\d)",
                       re.I)
_OCLOCK = re.compile(r"\b(\d{1,2})\s*o['’]?\s?clock\b", re.I)
_WORD_CLOCK = re.compile(r"\b(?:(?P<lead>at|by|around|about)\s+)?(?P<h>" + _HOUR_W + r")[\s-](?P<m>" + _MINUTE_W
                         + r")\b", re.I)
_WORD_HOUR = re.compile(r"\b(?:(?P<lead>at|around|about|by)\s+)?(?P<h>" + _HOUR_W + r")(?P<ish>\s*-?ish)?\b", re.I)
#: After an hour said in words, what makes it a clock time: a meridiem, "o'clock", a part of the day.
_CLOCK_CONTEXT = re.compile(r"\s*(?:" + _AMPM + r"|o['’]?\s?clock\b|" + _DAY_CONTEXT + r")", re.I)
#: After "at ten": the end of the phrase or of a clause, or a zone.
_CLAUSE_END = re.compile(r"\s*(?:$|[,.;:!?)]|(?:and|but|on|when|so|yesterday|today|[a-z]+\s+time|"
                         + "|".join(a.lower() for a in ZONE_ABBREVIATIONS) + r")\b)", re.I)
_PAST_TO = re.compile(
    r"\b(?P<n>(?:a\s+)?quarter|half|\d{1,2}|" + _MINUTE_W + r")(?P<unit>\s+min(?:ute)?s?)?\s+"
    r"(?P<rel>past|after|to|before|of|till|til)\s+(?P<h>\d{1,2}(?![\d:])|(?:" + _HOUR_W + r"|noon|midday|midnight)\b)"
    r"(?:\s*(?P<ap>" + _AMPM + r"))?", re.I)
_HALF_HOUR = re.compile(r"\bhalf\s+(\d{1,2}|" + _HOUR_W + r")\b(?!\s*(?:an?\b|hours?|past|of|the|way|[:\d]))", re.I)
_RANGE_END = re.compile(r"\b(\d{1,2})((?::[0-5]\d)?)\s*(?:-|–|to|until|till|through)\s*(\d{1,2})(?::[0-5]\d)?\s*("
                        + _AMPM + r")", re.I)
_DAY_RANGE = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)?\s*(?:-|–|to|through|thru|until)\s*\d{1,2}(?:st|nd|rd|th)?"
                        r"(\s+(?:of\s+)?" + _MONTH + r")\b", re.I)
_MONTH_RANGE = re.compile(r"\b(" + _MONTH + r"\.?\s+\d{1,2})(?:st|nd|rd|th)?\s*(?:-|–|to|through|thru|until)\s*"
                          r"\d{1,2}(?:st|nd|rd|th)?\b(?!:)", re.I)


def _hour_value(token: str) -> int:
    token = token.lower()
    if token in ("noon", "midday"):
        return 12
    if token == "midnight":
        return 0
    return _HOUR_WORDS[token] if token in _HOUR_WORDS else int(token)


def _minute_value(token: str) -> int:
    token = re.sub(r"[\s-]+", " ", token.lower())
    if "quarter" in token:
        return 15
    if token == "half":
        return 30
    return _MINUTE_WORDS[token] if token in _MINUTE_WORDS else int(token)


def _meridiem(ap: str | None) -> str | None:
    return None if not ap else ("pm" if ap.lower().startswith("p") else "am")


def _past_to(m: re.Match[str]) -> str:
    n, rel, word = m.group("n").lower(), m.group("rel").lower(), m.group("h")
    before = rel in ("to", "before", "of", "till", "til")
    digits = n[0].isdigit()
    if (rel == "of" and "quarter" not in n) or (n == "half" and before) \
            or (digits and not m.group("unit") and rel != "past"):
        return m.group(0)
    minutes = _minute_value(n)
    hour = _hour_value(word)
    if minutes >= 60 or hour > 23:
        return m.group(0)
    ap = _meridiem(m.group("ap"))
    if word.lower() in ("noon", "midday"):
        ap = "pm"
    elif word.lower() == "midnight":
        hour, ap = 24, None
    if ap:  # a stated meridiem: work in 24-hour time and say so with a leading zero
        if hour > 12:
            return m.group(0)
        hour = hour % 12 + (12 if ap == "pm" else 0)
    if before:
        hour, minutes = hour - 1, 60 - minutes
    if ap or word.lower() in ("noon", "midday", "midnight"):
        return f"{hour % 24:02d}:{minutes:02d}"
    if hour == 0:
        hour = 12
    return f"{hour}:{minutes:02d}"


def _word_clock(m: re.Match[str]) -> str:
    """"eleven forty am", "at seven fifteen" -> "11:40 am", "at 7:15"; other word pairs stay."""
    if not m.group("lead") and not _CLOCK_CONTEXT.match(m.string, m.end()):
        return m.group(0)
    lead = m.group("lead") + " " if m.group("lead") else ""
    return f"{lead}{_hour_value(m.group('h'))}:{_minute_value(m.group('m')):02d}"


def _word_hour(m: re.Match[str]) -> str:
    """"nine tonight", "at ten", "around fourish" -> digits; "at one point" stays."""
    if not _CLOCK_CONTEXT.match(m.string, m.end()) and not (m.group("lead") and _CLAUSE_END.match(m.string, m.end())):
        return m.group(0)
    lead = m.group("lead") or ("around" if m.group("ish") else "")
    return f"{lead} {_hour_value(m.group('h'))}".strip()


def _range_start(m: re.Match[str]) -> str:
    start, end, ap = int(m.group(1)), int(m.group(3)), _meridiem(m.group(4))
    if start > 12 or end > 12:
        return m.group(0)
    start_ap = ap if (start % 12) <= (end % 12) else ("am" if ap == "pm" else "pm")
    return f"{start}{m.group(2)}{start_ap}"


def spoken(text: str) -> str:
    """``text`` with spoken and regional clock forms written as plain clock times (same meaning)."""
    text = _H_FORM.sub(lambda m: f"{m.group(1)}:{m.group(2)}" if m.group(1) else f"{m.group(3)} {m.group(4)}:00", text)
    text = _DOT_TIME.sub(lambda m: f"{m.group(1)}:{m.group(2)}{m.group(3)}" if m.group(1)
                         else f"{m.group(4)} {m.group(5)}:{m.group(6)}", text)
    text = _ISH.sub(r"around \1", text)
    text = _OCLOCK.sub(r"at \1", text)
    text = _WORD_CLOCK.sub(_word_clock, text)
    text = _PAST_TO.sub(_past_to, text)
    text = _HALF_HOUR.sub(lambda m: f"{_hour_value(m.group(1))}:30", text)
    text = _WORD_HOUR.sub(_word_hour, text)
    text = _RANGE_END.sub(_range_start, text)
    text = _DAY_RANGE.sub(r"\1\2", text)
    return _MONTH_RANGE.sub(r"\1", text)


_CLOCK = re.compile(
    r"(?P<lead>\b" + _LEAD + r"\s+(?:(?:about|around)\s+)?|~\s*)?(?<![\w:/.,-])(?P<h>\d{1,2})"
    r"(?::(?P<m>[0-5]\d)(?::(?P<s>[0-5]\d))?)?(?![\d/:]|\.\d)(?:\s*(?P<ap>" + _AMPM + r"))?"
    r"|\b(?P<word>noon|midday|midnight)\b", re.I)
_CONTEXT_AFTER = re.compile(r"\s+" + _DAY_CONTEXT, re.I)
#: Parts of the day: the hour they start at (Duckling's), and how a bare hour in them reads.
_PARTS: dict[str, tuple[int, str]] = {
    "early morning": (0, "am"), "morning": (0, "am"), "lunchtime": (12, "pm"), "lunch": (12, "pm"),
    "after lunch": (13, "pm"), "afternoon": (12, "pm"), "evening": (18, "pm"), "tonight": (18, "pm"),
    "late tonight": (21, "pm"), "late night": (21, "late"), "last night": (18, "night"), "night": (18, "night"),
}
_POSSESSIVE = r"(?:['’]?s)?"
"""A day word's possessive, with or without the apostrophe ("yesterday's", "yesterdays", "this mornings")."""
_PART_OF_DAY = re.compile(r"\b(early\s+morning|after\s+lunch|late\s+tonight|late\s+(?:at\s+)?night|last\s+night|"
                          r"lunchtime|lunch|morning|afternoon|evening|tonight|night)" + _POSSESSIVE
                          + r"(?:\s*-?ish)?\b", re.I)
_REL_DAY = re.compile(r"\b(?:the\s+)?(day\s+before\s+yesterday|yesterday|today|tonight|tomorrow|last\s+night|"
                      r"this\s+(?:morning|afternoon|evening))" + _POSSESSIVE + r"\b", re.I)
_REL_OFFSET = {"day before yesterday": -2, "yesterday": -1, "last night": -1, "tomorrow": 1}
_COUNT_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                "eight": 8, "nine": 9, "ten": 10, "a couple of": 2, "a couple": 2, "couple of": 2, "a few": 3,
                "few": 3, "several": 4, "some": 3, "many": 5}
#: Counts that say "more than one" without saying how many: "a few hours ago" names no hour.
_VAGUE_COUNTS = frozenset({"a few", "few", "several", "some", "many"})
_AGO = re.compile(r"\b(\d{1,3}|an?|one|two|three|four|five|six|seven|eight|nine|ten|a\s+couple(?:\s+of)?|"
                  r"couple\s+of|a\s+few|few|several|some|many)\s+(days?|weeks?|hours?|hrs?|minutes?|mins?)\s+ago\b",
                  re.I)
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEEKDAY_WORD = r"(?:mon(?:day)?|tue(?:s(?:day)?)?|wed(?:nesday|s)?|thu(?:r(?:s(?:day)?)?)?|fri(?:day)?|" \
                r"sat(?:urday)?|sun(?:day)?)"
_DIRECTIONS = r"(?:last|this\s+past|this|past|previous|next)"
_WEEKDAY_DAY = re.compile(r"\b(?:(?P<dir>" + _DIRECTIONS + r"|on)\s+)?(?P<wd>" + _WEEKDAY_WORD + r")(?P<s>s)?\b\.?"
                          r"(?!\s+(?:next|of|after|before|this|last)\b|-)", re.I)
#: A weekday of a named week: "Tuesday last week", "Wed of this week", "last week on Thursday".
_WEEKDAY_OF_WEEK = re.compile(
    r"\b(?:(?P<wd>" + _WEEKDAY_WORD + r")\.?,?\s+(?:of\s+|in\s+)?(?:the\s+)?(?P<dir>" + _DIRECTIONS + r")\s+week"
    r"|(?P<dir2>" + _DIRECTIONS + r")\s+week(?:['’]?s)?[\s,]+(?:on\s+)?(?:the\s+)?(?P<wd2>" + _WEEKDAY_WORD + r"))\b",
    re.I)
#: Weekday abbreviations that are also words ("c'mon", "we sat", "the sun", "wed"): in a message, read
#: lowercase only with a direction before them, a time after them, or as the whole answer.
#: A meeting within a few words: what makes "fridays" (no apostrophe) a possessive ("fridays team sync").
_NAMED_NEXT = re.compile(r"\s+(?:[\w&+-]+\s+){0,2}?(?:meeting|mtg|call|sync|standup|stand-up|review|demo|kickoff|"
                         r"kick-off|retro|1:1|all[\s-]hands|town\s*hall|session|planning|interview|webinar|huddle|"
                         r"catch-up|check-in|onboarding|training|workshop|briefing|debrief|scrum)\b", re.I)
_WORDLIKE_DAYS = frozenset({"mon", "wed", "sat", "sun"})
_GENERIC_BEFORE = re.compile(r"\b(?:a|every|each|most|some|any|other|alternate)\s+$", re.I)
_SUBJECT_BEFORE = re.compile(r"\b(?:i|we|they|he|she|you|who|it|everyone|the|and|just|never|also|still|had|has|"
                             r"have)\s+$", re.I)
_TIME_AFTER = re.compile(r"\.?,?\s*(?:(?:at|@|around|about|from)\s*)?(?:\d{1,2}(?::[0-5]\d)?(?:\s*" + _AMPM + r"|\b)"
                         r"|(?:noon|midday|morning|afternoon|evening|night|lunch)\b)", re.I)
_ALONE_BEFORE = re.compile(r"(?:^|[.!?\n])\W*(?:(?:it\s+was|it\s+is|it['’]s|was|maybe|probably|i\s+think)\s+)?$", re.I)
_ALONE_AFTER = re.compile(r"\W*(?:(?:i\s+think|maybe|probably|i\s+believe)\W*)?$", re.I)

#: Periods that name no day. In a message they fill no date ("a few weeks ago", "last month", "recently",
#: "earlier this year", "2 weeks ago": the bot asks which day), and a weekday said with one ("a Tuesday, a
#: few weeks back") is not taken to be the most recent one. A count of days is a day ("2 days ago", "a
#: couple of days ago"); an unsaid count of them is not ("a few days ago").
_VAGUE_COUNT = r"(?:\d{1,3}|an?|one|two|three|four|five|six|seven|eight|nine|ten|a\s+couple(?:\s+of)?|" \
               r"couple(?:\s+of)?|(?:a\s+)?few|several|some|many|a\s+number\s+of)"
_VAGUE = re.compile(
    r"\b(?:"
    r"(?:" + _VAGUE_COUNT + r"\s+)?(?:weeks?|months?|years?)\s+(?:ago|back|before|earlier)(?!\s+today\b)"
    r"|(?:(?:a\s+)?few|several|some|many|a\s+number\s+of)\s+days\s+(?:ago|back|before|earlier)"
    r"|(?:(?:sometime|some\s+time|at\s+some\s+point|earlier|during|over|in)\s+)?(?:the\s+)?"
    r"(?:last|this|past|previous|prior)\s+(?:" + _VAGUE_COUNT + r"\s+)?(?:weeks?|months?|years?|quarter|weekend|days)"
    r"|(?:sometime\s+)?earlier\s+(?:this|in\s+the|last)\s+(?:week|month|year|quarter)"
    r"|(?:over|at|during)\s+the\s+weekend"
    r"|(?:a\s+(?:little\s+)?while|a\s+bit|some\s*time|not\s+(?:so\s+|that\s+)?long)\s+(?:ago|back)"
    r"|recently|lately|the\s+other\s+day|the\s+week\s+before(?:\s+last)?"
    r"|(?:early|mid|late|(?:the\s+)?(?:start|beginning|middle|end)\s+of)[\s-]+(?:(?:the|this|last|next)\s+"
    r"(?:week|month|year)|" + _MONTH + r"\b(?!\.?\s+\d))"
    r")\b", re.I)
_ORDINAL_WORDS = {w: i for i, w in enumerate(
    "zeroth first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth fourteenth "
    "fifteenth sixteenth seventeenth eighteenth nineteenth twentieth".split()) if i}
_ORDINAL_WORDS |= {"twenty " + w: 20 + i for w, i in list(_ORDINAL_WORDS.items()) if i < 10}
_ORDINAL_WORDS |= {"thirtieth": 30, "thirty first": 31}
_ORD_W = r"(?:" + "|".join(w.replace(" ", r"[\s-]") for w in sorted(_ORDINAL_WORDS, key=len, reverse=True)) + r")"
_DAY_NUMBER = r"(?:\d{1,2}(?:st|nd|rd|th)?|" + _ORD_W + r")"
_YEAR_AFTER = r"(?:,?\s+(?P<y>(?:19|20)\d{2})\b|\s+'(?P<y2>\d{2})\b)?"
_MONTH_DAY = re.compile(r"\b(?P<mon>" + _MONTH + r")\.?\s+(?:the\s+)?(?P<d>" + _DAY_NUMBER + r")\b"
                        r"(?!\s*(?::|" + _AMPM + r"|h\d))" + _YEAR_AFTER, re.I)
_DAY_MONTH = re.compile(r"\b(?:the\s+)?(?P<d>" + _DAY_NUMBER + r")\s*(?:of\s+)?(?P<mon>" + _MONTH + r")\b\.?"
                        r"(?:,?\s+(?P<y>(?:19|20)\d{2}|\d{2})\b(?![:.]\d|\s*(?:" + _AMPM + r"|h\d)))?", re.I)
_ORDINAL_DAY = re.compile(r"(?:\bon\s+(?:the\s+)?|\bthe\s+)(?P<d>\d{1,2}(?:st|nd|rd|th)|" + _ORD_W + r")\b"
                          r"(?=\s*(?:$|[,.;:!?)\-–]|at\b|@|around\b|about\b|in\s+the\b|from\b|and\b|when\b|but\b))",
                          re.I)
_ISO_DATE = re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})\b")
_NUMERIC_DATE = re.compile(r"(?<![\d/.:])(?P<a>\d{1,2})/(?P<b>\d{1,2})(?:/(?P<y>\d{4}|\d{2}))?(?![\d/])"
                           r"|(?<![\d.:])(?P<da>\d{1,2})\.(?P<db>\d{1,2})\.(?P<dy>\d{4}|\d{2})?(?![\d.])")
_NEGATED = re.compile(r"(?:\bnot|n['’]t|\bnever|\binstead\s+of|\brather\s+than)\s+(?:on\s+|at\s+|the\s+)?$", re.I)
_FUTURE_WORD = re.compile(r"\b(?:tomorrow|next|upcoming|coming|later\s+today|from\s+now)\b|\bin\s+(?:\d|an?\b)", re.I)
_FILLER_ONLY = re.compile(r"^(?:[\s,.;:!?()@~\-–]|\b(?:on|at|in|the|of|around|about|approx|approximately|roughly|"
                          r"circa|from|since|to|until|till|til|through|and|it|was|is|started|began|ish|this|that|"
                          r"between|by|before|after|approx\.)\b)*$", re.I)
#: Something date-like that the quick pass did not read: only then is dateparser asked.
_DATE_HINT = re.compile(r"\b(?:" + _MONTH + r"|weeks?|months?|years?|weekend|ago|eom|eoy)\b|\d{1,4}[/.-]\d{1,2}",
                        re.I)


@dataclass(frozen=True)
class _Mention:
    start: int
    end: int


@dataclass(frozen=True)
class _Clock(_Mention):
    hour: int
    minute: int
    second: int | None
    grain: Grain
    meridiem: str | None
    """"am"/"pm" when said; None when the hour alone must be read (by the part of the day or working hours)."""
    padded: bool
    """Written with a leading zero or in 24-hour time ("07:30", "14:00"): read as written."""


@dataclass(frozen=True)
class _Day(_Mention):
    day: date
    kind: str
    """relative | ago | weekday | month_day | ordinal | explicit"""
    weekday: int | None = None
    at: datetime | None = None
    """For "2 hours ago": the moment itself."""
    directed: bool = True
    """False for a weekday said without "last", "this" or "next" (or a week): its most recent one is a guess."""


def _month_number(name: str) -> int:
    return ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"].index(
        name[:3].lower()) + 1


def _day_number(token: str) -> int:
    token = re.sub(r"[\s-]+", " ", token.lower())
    if token in _ORDINAL_WORDS:
        return _ORDINAL_WORDS[token]
    return int(re.sub(r"\D", "", token))


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _past_month_day(today: date, month: int, day: int, *, forward: bool) -> date | None:
    """The most recent ``month``/``day`` on or before ``today`` (the next one after it when ``forward``)."""
    for shift in ((0, 1, 2, 3, 4) if forward else (0, -1, -2, -3, -4)):
        candidate = _safe_date(today.year + shift, month, day)
        if candidate is not None and (candidate > today if forward else candidate <= today):
            return candidate
    return None


_DEADLINE_LEAD = re.compile(r"(?:by|until|till|til|before)\b", re.I)


def _clocks(text: str, *, strict: bool) -> list[_Clock]:
    """Clock times in ``text``; in a message (``strict``), not a deadline or an end ("by 5pm", "until 4")."""
    found: list[_Clock] = []
    for m in _CLOCK.finditer(text):
        if strict and m.group("lead") and _DEADLINE_LEAD.match(m.group("lead")):
            continue
        if m.group("word"):
            word = m.group("word").lower()
            found.append(_Clock(m.start(), m.end(), 0 if word == "midnight" else 12, 0, None, "hour",
                                "am" if word == "midnight" else "pm", True))
            continue
        hour, minute, second = int(m.group("h")), m.group("m"), m.group("s")
        ap = _meridiem(m.group("ap"))
        rest = text[m.end():]
        if ap:
            if not 1 <= hour <= 12:
                continue
        elif minute is None:
            if hour > 23 or _NOT_CLOCK_AFTER.match(rest):
                continue
            if not m.group("lead") and not _CONTEXT_AFTER.match(rest):
                continue
        elif hour > 23:
            continue
        grain: Grain = "second" if second else "minute" if minute else "hour"
        padded = m.group("h").startswith("0") or hour > 12 or hour == 0
        start = m.start("h") if m.group("lead") else m.start()
        found.append(_Clock(start, m.end(), hour, int(minute or 0), int(second) if second else None, grain, ap,
                            padded))
    return found


def _days(text: str, now: datetime, *, strict: bool, american: bool) -> list[_Day]:
    today = now.date()
    found: list[_Day] = []
    for m in _REL_DAY.finditer(text):
        word = re.sub(r"\s+", " ", m.group(1).lower())
        found.append(_Day(m.start(), m.end(), today + timedelta(days=_REL_OFFSET.get(word, 0)), "relative"))
    for m in _AGO.finditer(text):
        count_word = re.sub(r"\s+", " ", m.group(1).lower())
        count = _COUNT_WORDS[count_word] if count_word in _COUNT_WORDS else int(count_word)
        unit = m.group(2).lower()
        if count_word in _VAGUE_COUNTS:
            # "a few hours ago" names no hour, and a day only when every reading of it falls on today
            window = timedelta(hours=6 if unit.startswith("h") else 1)
            if unit.startswith(("h", "m")) and (now - window).date() == today:
                found.append(_Day(m.start(), m.end(), today, "relative"))
            continue
        if unit.startswith(("h", "m")):
            delta = timedelta(hours=count) if unit.startswith("h") else timedelta(minutes=count)
            moment = now - delta
            found.append(_Day(m.start(), m.end(), moment.date(), "ago", at=moment))
        else:
            days = count * (7 if unit.startswith("w") else 1)
            found.append(_Day(m.start(), m.end(), today - timedelta(days=days), "ago"))
    monday = today - timedelta(days=today.weekday())
    for m in _WEEKDAY_OF_WEEK.finditer(text):
        token, direction = (m.group("wd"), m.group("dir")) if m.group("wd") else (m.group("wd2"), m.group("dir2"))
        wanted = [w[:3] for w in _WEEKDAYS].index(token[:3].lower())
        shift = 0 if direction.lower() == "this" else 1 if direction.lower() == "next" else -1
        found.append(_Day(m.start(), m.end(), monday + timedelta(weeks=shift, days=wanted), "weekday", weekday=wanted))
    for m in _WEEKDAY_DAY.finditer(text):
        token = m.group("wd")
        direction = re.sub(r"\s+", " ", (m.group("dir") or "").lower())
        if m.group("s") and not (strict and not direction and _NAMED_NEXT.match(text, m.end())):
            continue  # "on Fridays" is every Friday; "fridays kickoff" is one, as "Friday's kickoff" is
        if strict and not _weekday_said(text, m, token, direction):
            continue
        wanted = [w[:3] for w in _WEEKDAYS].index(token[:3].lower())
        back = (today.weekday() - wanted) % 7
        if direction == "next":
            day = today + timedelta(days=(wanted - today.weekday()) % 7 or 7)
        elif direction == "this":
            day = today - timedelta(days=today.weekday()) + timedelta(days=wanted)
        elif direction in ("last", "past", "previous", "this past"):
            day = today - timedelta(days=back or 7)
        else:
            day = today - timedelta(days=back)
        found.append(_Day(m.start(), m.end(), day, "weekday", weekday=wanted, directed=direction not in ("", "on")))
    for pattern in (_MONTH_DAY, _DAY_MONTH):
        for m in pattern.finditer(text):
            if strict and m.group("mon").lower() in ("may", "march") and not m.group("mon")[0].isupper():
                continue
            month, number = _month_number(m.group("mon")), _day_number(m.group("d"))
            year_text = m.group("y") or (m.groupdict().get("y2") or None)
            day_: date | None
            if year_text:
                year = int(year_text) + (2000 if len(year_text) == 2 else 0)
                day_ = _safe_date(year, month, number)
                kind = "explicit"
            else:
                day_ = _past_month_day(today, month, number, forward=_next_before(text, m.start()))
                kind = "month_day"
            if day_ is not None:
                found.append(_Day(m.start(), m.end(), day_, kind))
    for m in _ORDINAL_DAY.finditer(text):
        number = _day_number(m.group("d"))
        if not 1 <= number <= 31:
            continue
        first = today.replace(day=1)
        for shift in range(0, 4):
            month_start = _month_start(first, -shift)
            candidate = _safe_date(month_start.year, month_start.month, number)
            if candidate is not None and candidate <= today:
                found.append(_Day(m.start(), m.end(), candidate, "ordinal"))
                break
    for m in _ISO_DATE.finditer(text):
        if (iso := _safe_date(int(m.group("y")), int(m.group("m")), int(m.group("d")))) is not None:
            found.append(_Day(m.start(), m.end(), iso, "explicit"))
    for m in _NUMERIC_DATE.finditer(text):
        if m.group("a"):
            first_, second_, year_text = int(m.group("a")), int(m.group("b")), m.group("y")
            month, number = (first_, second_) if american else (second_, first_)
            if month > 12:  # only one reading works
                month, number = number, month
        else:
            number, month, year_text = int(m.group("da")), int(m.group("db")), m.group("dy")
            if not year_text:
                continue  # "2.30" is a time or a version, not a date
        if year_text:
            candidate = _safe_date(int(year_text) + (2000 if len(year_text) == 2 else 0), month, number)
            kind = "explicit"
        else:
            candidate = _past_month_day(today, month, number, forward=_next_before(text, m.start())) \
                if 1 <= month <= 12 else None
            kind = "month_day"
        if candidate is not None:
            found.append(_Day(m.start(), m.end(), candidate, kind))
    # one mention per place in the text (the longest); "Friday, Mar 6" is one date
    found.sort(key=lambda d: (d.start, -(d.end - d.start)))
    kept: list[_Day] = []
    for d in found:
        if kept and d.start < kept[-1].end:
            continue
        if kept and kept[-1].kind == "weekday" and d.kind in ("month_day", "explicit") \
                and _JOINER.fullmatch(text, kept[-1].end, d.start):
            d = _Day(kept[-1].start, d.end, d.day, d.kind, weekday=kept[-1].weekday)
            kept.pop()
        kept.append(d)
    return kept


_JOINER = re.compile(r"[\s,]*(?:the\s+)?")


def _weekday_said(text: str, m: re.Match[str], token: str, direction: str) -> bool:
    """Whether a weekday in a message names a day: not one of many ("every Tuesday", "on a Friday"), and
    an abbreviation that is also a word ("sat", "wed", "sun", "mon") only when written as a day: capitalised,
    after a direction word, before a time, or as the whole answer."""
    before = text[max(0, m.start() - 16):m.start()]
    if not direction and _GENERIC_BEFORE.search(before):
        return False
    short = token.lower().rstrip(".")
    if short not in _WORDLIKE_DAYS or token[0].isupper() or direction:
        return True
    if _SUBJECT_BEFORE.search(before):
        return False
    after = text[m.end():]
    if (clock := _TIME_AFTER.match(after)) and not (clock.group(0)[-1].isdigit()
                                                    and _NOT_CLOCK_AFTER.match(after, clock.end())):
        return True
    return bool(_ALONE_BEFORE.search(text[:m.start()]) and _ALONE_AFTER.match(after))


def _next_before(text: str, start: int) -> bool:
    """"next March 3": the next occurrence, not the last one."""
    return bool(re.search(r"\bnext\s+$", text[max(0, start - 8):start], re.I))


_M = TypeVar("_M", bound=_Mention)


def _first_said(mentions: Sequence[_M], text: str) -> _M | None:
    """The first mention that is not denied ("not Monday, Tuesday" -> Tuesday)."""
    for mention in mentions:
        if not _NEGATED.search(text[max(0, mention.start - 24):mention.start]):
            return mention
    return mentions[0] if mentions else None


def _clock_hour(clock: _Clock, part: str | None) -> int:
    """The 24-hour hour of a clock time, read by its meridiem, the part of the day, or working hours."""
    hour = clock.hour
    if clock.meridiem:
        return hour % 12 + (12 if clock.meridiem == "pm" else 0)
    if clock.padded:
        return hour
    reading = _PARTS[part][1] if part else None
    if reading == "am":
        return 0 if hour == 12 else hour
    if reading == "pm":
        return hour if hour == 12 else hour + 12
    if reading == "night":
        return hour + 12 if 6 <= hour < 12 else (0 if hour == 12 else hour)
    if reading == "late":
        return hour + 12 if 8 <= hour < 12 else (0 if hour == 12 else hour)
    # No meridiem and no part of the day: a meeting time in working hours ("at 3" is 15:00, "at 9" 09:00).
    return hour + 12 if 1 <= hour <= 7 else hour


@dataclass(frozen=True)
class _Reading:
    when: When | None
    covered: bool
    """Whether everything in the text was read (only filler words left)."""
    leftover: str


def _read(text: str, now: datetime, *, strict: bool) -> _Reading:
    """The quick pass over ``text`` (already through :func:`spoken`), at ``now`` in the customer's zone."""
    tz = now.tzinfo
    zone_key = str(getattr(tz, "key", ""))
    american = zone_key.startswith(("America/", "US/", "Pacific/Honolulu")) or not zone_key.count("/")
    days = _days(text, now, strict=strict, american=american)
    vague: list[tuple[int, int]] = []
    if strict:  # a period that names no day fills no date, nor makes a bare weekday the most recent one
        vague = [m.span() for m in _VAGUE.finditer(text)]
        vague = [(s, e) for s, e in vague if not any(d.start <= s and e <= d.end and d.end - d.start > e - s
                                                     for d in days)]  # "Tuesday last week" is a day
        days = [d for d in days if not any(s <= d.start and d.end <= e for s, e in vague)]
        if vague:
            days = [d for d in days if d.directed]
    clocks = [c for c in _clocks(text, strict=strict)
              if not any(s <= c.start < e for s, e in [(d.start, d.end) for d in days] + vague)]
    parts = list(_PART_OF_DAY.finditer(text))
    if strict and len(days) > 1:  # a report is about the past: "it's Tuesday's recording, fix it by tomorrow"
        days = [d for d in days if d.day <= now.date()] or days
    day = _first_said(days, text)
    clock = _first_said(clocks, text)
    part = re.sub(r"\s+(?:at\s+)?", " ", parts[0].group(1).lower()) if parts else None
    spans = [(m.start, m.end) for m in (*days, *clocks)] + [p.span() for p in parts] + vague
    leftover = text
    for start, end in spans:
        leftover = leftover[:start] + " " * (end - start) + leftover[end:]
    covered = bool(_FILLER_ONLY.match(leftover))
    if day is None and clock is None and part is None:
        return _Reading(None, covered, leftover)
    if day is not None and day.at is not None:  # "2 hours ago"
        return _Reading(When(day.at.replace(second=0, microsecond=0), "minute", True, True, text), covered, leftover)
    future = bool(_FUTURE_WORD.search(text))
    if clock is not None:
        hour = _clock_hour(clock, part)
        moment_time = time(hour % 24, clock.minute, clock.second or 0)
        grain = clock.grain
        has_time = True
    elif part is not None:
        moment_time = time(_PARTS[part][0])
        grain = "hour"
        has_time = False  # "this morning" is not a time a person can look up
    else:
        moment_time = time(0)
        grain = "day"
        has_time = False
    if day is not None:
        the_day = day.day
        if day.kind == "weekday" and clock is not None and the_day == now.date() and not future:
            if datetime.combine(the_day, moment_time, tzinfo=tz) > now + timedelta(minutes=1):
                the_day -= timedelta(days=7)  # "Monday at 3pm", said on Monday morning: last Monday
        if day.weekday is not None and day.kind in ("month_day", "explicit") and the_day.weekday() != day.weekday:
            the_day = _with_weekday(the_day, day.weekday, keep_year=day.kind == "explicit")
        value = datetime.combine(the_day, moment_time, tzinfo=tz)
        return _Reading(When(value, grain, True, has_time, text), covered, leftover)
    value = datetime.combine(now.date(), moment_time, tzinfo=tz)
    if value > now + timedelta(minutes=1) and not future:
        value = datetime.combine(now.date() - timedelta(days=1), moment_time, tzinfo=tz)  # today's has not come yet
    return _Reading(When(value, grain, False, has_time, text), covered, leftover)


def _with_weekday(day: date, weekday: int, *, keep_year: bool) -> date:
    """"Friday, Mar 6" with no year: the nearest year in which Mar 6 is a Friday."""
    if keep_year:
        return day
    for shift in (1, -1, 2, -2, 3, -3):
        candidate = _safe_date(day.year + shift, day.month, day.day)
        if candidate is not None and candidate.weekday() == weekday:
            return candidate
    return day


def resolve(phrase: str, now: datetime, *, prefer: Literal["past", "future"] = "past") -> When | None:
    """Resolve one date/time phrase said at ``now`` (an aware datetime in the customer's zone)."""
    if _NOW.match(phrase) or _DEADLINE.match(phrase):
        return When(now, "second", True, True, phrase)  # "by Friday", "by 5pm": a deadline runs from now
    stated_zone = find_zone(phrase)
    if stated_zone is not None:
        phrase_wo_zone = (phrase[:stated_zone.span[0]] + " " + phrase[stated_zone.span[1]:]).strip()
        local = resolve(phrase_wo_zone, now.astimezone(ZoneInfo(stated_zone.name)), prefer=prefer)
        if local is None:
            return None
        return When(local.value.astimezone(now.tzinfo), local.grain, local.has_date, local.has_time, phrase)
    if prefer == "past":
        reading = _read(spoken(phrase), now, strict=False)
        if reading.when is not None and reading.covered:
            return When(reading.when.value, reading.when.grain, reading.when.has_date, reading.when.has_time, phrase)
    return _resolve_slow(phrase, now, prefer=prefer)


def find_when(text: str, now: datetime) -> When | None:
    """The meeting's date and/or time in a customer's message, at ``now`` in the customer's zone.

    A zone named in the message is the zone the times are in; the result is in ``now``'s zone."""
    stated = find_zone(text)
    if stated is not None and getattr(now.tzinfo, "key", None) != stated.name:
        local = find_when(text[:stated.span[0]] + " " * (stated.span[1] - stated.span[0]) + text[stated.span[1]:],
                          now.astimezone(ZoneInfo(stated.name)))
        if local is None:
            return None
        return When(local.value.astimezone(now.tzinfo), local.grain, local.has_date, local.has_time, local.text)
    reading = _read(spoken(text), now, strict=True)
    when = reading.when
    if (when is None or not when.has_date) and _DATE_HINT.search(reading.leftover):
        slow = _find_when_slow(reading.leftover, now)
        if slow is not None and slow.has_date and slow.grain not in ("week", "month", "year"):
            if when is None:
                return When(slow.value, "day", True, False, slow.text)
            return When(datetime.combine(slow.value.date(), when.value.timetz()), when.grain, True, when.has_time,
                        f"{slow.text} {when.text}")
    return when


_ASKED_HOUR = re.compile(r"(?:^|[,;.!?]\s*|\b(?:it\s+was|it\s+is|it['’]s|was|started|began|starts|at|around|about|"
                         r"maybe|probably|like|say|by)\s+)~?\s*(\d{1,2})(?::([0-5]\d))?(?:\s*-?ish)?[\s.!]*$", re.I)


def _with_asked_hour(text: str, when: When | None, now: datetime) -> When | None:
    """A bare hour that ends the answer to "what time did it start?" ("it was 11", "10ish"), read in
    working hours as a clock time elsewhere is ("at 3" is 15:00); with the day ``when`` gave, if any."""
    m = _ASKED_HOUR.search(spoken(text))
    if m is None or int(m.group(1)) > 23:
        return when
    hour = int(m.group(1))
    clock = _Clock(m.start(1), m.end(), hour, int(m.group(2) or 0), None, "minute" if m.group(2) else "hour", None,
                   m.group(1).startswith("0") or hour > 12 or hour == 0)
    at = time(_clock_hour(clock, None) % 24, clock.minute)
    if when is not None and when.has_date:
        return When(datetime.combine(when.value.date(), at, tzinfo=when.value.tzinfo), clock.grain, True, True,
                    when.text)
    value = datetime.combine(now.date(), at, tzinfo=now.tzinfo)
    if value > now:
        value -= timedelta(days=1)
    return When(value, clock.grain, False, True, text)


# ---- names ----

_QUOTED = re.compile(r"[\"“”«]([^\"“”«»\n]{2,80})[\"“”»]|(?<![\w])['‘]([^'‘’\n]{2,80})['’](?![\w])")
_CALLED = re.compile(r"\b(?:called|named|titled|entitled)\s+([\w&'’:#+-]+(?:\s+[\w&'’:#+-]+){0,7})", re.I)
_CAPITALISED = re.compile(r"\b([A-Z][\w&'’+-]*|[0-9][\w&]*)"
                          r"(?:\s+(?:[A-Z0-9][\w&'’+-]*|&|and|of|with|the|for|x|-|–|—|/))*\s+[A-Z0-9][\w&'’+-]*")
MEETING_NOUNS = ("meeting", "call", "sync", "standup", "stand-up", "review", "demo", "interview", "webinar", "1:1",
                 "one-on-one", "kickoff", "kick-off", "retro", "retrospective", "session", "planning", "huddle",
                 "catch-up", "check-in", "onboarding", "training", "workshop", "all-hands", "town hall",
                 "office hours", "briefing", "debrief", "offsite", "scrum", "1-on-1", "mtg", "all hands", "allhands",
                 "one on one", "1 on 1", "townhall", "qbr", "sync-up")
#: Meeting nouns that name a meeting alone ("the standup"); the others need a word before them
#: ("the design review", not "the review").
_STANDALONE_NOUNS = frozenset({"sync", "standup", "stand-up", "1:1", "one-on-one", "kickoff", "kick-off", "retro",
                               "retrospective", "huddle", "catch-up", "check-in", "onboarding", "all-hands",
                               "town hall", "office hours", "debrief", "offsite", "scrum", "1-on-1", "planning",
                               "all hands", "allhands", "one on one", "1 on 1", "townhall", "qbr", "sync-up"})
_NOUN = re.compile(r"(?<![\w-])(" + "|".join(re.escape(n).replace(r"\ ", r"\s+") for n in
                                            sorted(set(MEETING_NOUNS), key=len, reverse=True)) + r")(?![\w-])", re.I)
_NAME_WORD = re.compile(r"[A-Za-z0-9][\w&+'’:#/-]*")
#: Words that end a lowercase name when read backwards from its meeting noun: articles, pronouns,
#: prepositions, verbs and the adjectives that describe a meeting without naming it.
_NAME_STOP = frozenset("""
a an the our my your their his her its this that these those any every each some another no all both either
of from for in on at to with by about during after before since into over than via per as like
and or but nor so then also just only even still again not never
is was were are be been being has have had do does did will would can could should may might must shall
i we you they he she it me us them him who which what when where why how there here
recording recordings recorded transcript transcripts summary summaries notes note notetaker bot video audio
link file files clip clips
yesterday today tomorrow tonight morning afternoon evening night week weekend month year
yesterdays todays tomorrows tonights mornings afternoons evenings nights weeks weekends months years
last next previous same other whole entire full recent latest earlier later first second third final usual
regular normal scheduled important big small long short quick entire new old whole
zoom teams google meet webex slack gotomeeting online virtual
find see get open access download view play hear join record transcribe summarize summarise export share send
attend schedule start stop need want lose load locate fix check look help show give make take run host set
cancel reschedule miss skip edit delete remove restore recover retrieve missing broken lost gone empty blank
please thanks hi hello hey sorry actually yes yeah ok okay
""".split())
_BOUNDARY_PUNCTUATION = re.compile(r"[,.;:!?()\"“”«»\[\]]")
_WITH = re.compile(r"\s+with\s+(?:[A-Z][\w&'’+.-]*)(?:\s+[A-Z][\w&'’+.-]*){0,2}")
_DASH = re.compile(r"\s*[-–—]\s*")
_SUFFIX_WORD = re.compile(r"[A-Za-z0-9][\w&'’+.]*(?<!\.)")
#: Lowercase words after a dash that start a remark, not the rest of a name ("standup - urgent").
_SUFFIX_STOP = frozenset("""
urgent asap again help issue issues problem problems question quick fyi btw nothing none everything something
anything wrong failed fails failing cut half only didnt doesnt dont isnt wasnt werent cant wont arent hasnt havent
im ive thats theres whats bot notetaker nobody everyone someone anyone pls plz thx
""".split())
#: What may follow a lowercase name after a dash: the end of a clause, a day or a time, or what happened to it
#: ("customer onboarding - globex friday 11am", "sales sync - initech recording is missing").
_AFTER_NAME = re.compile(r"\s*(?:$|[,.;:!?()\n]|\d|(?:on|at|from|in|last|this|yesterday|today|tonight|tomorrow|around|"
                         r"about|is|was|has|had|have|got|never|did|didn.?t|wasn.?t|isn.?t|doesn.?t|hasn.?t|recordings?|"
                         r"transcripts?|summary|notes|video|audio|" + _MONTH + r"|" + _WEEKDAY + r")\b)", re.I)
_NOT_NAMES = {
    "i", "i'm", "i've", "hi", "hello", "hey", "thanks", "please", "the", "our", "my", "this", "that", "we", "it",
    "zoom", "google", "meet", "microsoft", "teams", "slack", "outlook", "calendar", "baton", "ok", "okay", "yes", "no",
    "pst", "pdt", "est", "edt", "cst", "cdt", "mst", "mdt", "utc", "gmt", "cet", "cest", "bst", "ist", "et", "pt",
    "am", "pm", "today", "yesterday", "tomorrow", "last", "next", "can", "could", "why", "what", "when", "where",
    "how", "is", "was", "did", "does", "do", "also", "and", "but", "so", "sorry", "help", "urgent", "asap",
}
_CALENDAR_WORDS = re.compile(r"^(?:" + _MONTH + r"|" + _WEEKDAY + r")$", re.I)


_TIME_WORD = re.compile(r"^(?:\d{1,2}(?::\d{2})?(?:am|pm)?|\d{1,2}/\d{1,2}(?:/\d{2,4})?|\d{4}-\d{2}-\d{2})$", re.I)


def _not_part_of_name(word: str) -> bool:
    w = word.lower().strip("'’,.")
    return w in _NOT_NAMES or bool(_CALENDAR_WORDS.match(w) or _TIME_WORD.match(w)) or w in ZONE_WORDS \
        or word in ZONE_ABBREVIATIONS


#: Words that can open a run of capitalised words without being part of the name ("Recording of Q3 Planning").
_NOT_NAME_START = frozenset({"recording", "recordings", "transcript", "transcripts", "summary", "summaries", "notes",
                             "notetaker", "bot", "video", "audio", "for", "of", "from", "in", "on", "at", "re", "fwd",
                             "fw", "subject", "your", "their", "-", "–", "—"})


def _clean_name(name: str) -> str | None:
    words = name.strip(" .,:;!?-").split()
    while words and (_not_part_of_name(words[0]) or words[0].lower() in _NOT_NAME_START):
        words.pop(0)
    while words and (_not_part_of_name(words[-1])
                     or words[-1].lower() in ("at", "on", "with", "of", "for", "and", "the", "-", "–", "—", "/",
                                              "time")):
        words.pop()
    if not words:
        return None
    cleaned = " ".join(words)
    if re.fullmatch(r"[\d\s:/.apm-]+", cleaned, re.I):
        return None
    return cleaned


def _noun_phrase(text: str) -> str | None:
    """A name built on a meeting noun, lowercase or not: "the weekly design review" -> "weekly design review",
    "the standup", "Q4 planning - EMEA"; the words around it are left out ("the recording of the design
    review from yesterday" -> "design review")."""
    for noun in _NOUN.finditer(text):
        end = noun.end()
        while (more := _NOUN.match(text, end + 1)) and text[end] == " ":  # "design review meeting"
            end = more.end()
        start = noun.start()
        modifiers = 0
        for word in reversed(list(_NAME_WORD.finditer(text, max(0, start - 80), start))):
            gap = text[word.end():start]
            token = word.group(0).lower().rstrip("'’")
            possessive = token.endswith(("'s", "’s"))
            if gap.strip() or _BOUNDARY_PUNCTUATION.search(gap) or possessive or token in _NAME_STOP \
                    or token.endswith("n't") or token.endswith("n’t") or _not_part_of_name(word.group(0)) \
                    or (token.endswith("ed") and not word.group(0)[0].isupper()) or modifiers == 4:
                break
            start, modifiers = word.start(), modifiers + 1
        before = text[max(0, start - 12):start].lower().split()
        if before and before[-1] in ("a", "an", "another", "any"):
            continue  # "a call", "any meeting": not one meeting
        head = re.sub(r"\s+", " ", noun.group(1).lower())
        if modifiers == 0 and head not in _STANDALONE_NOUNS:
            continue
        end = _suffix_end(text, end)
        name = text[start:end].strip()
        if name and not _not_part_of_name(name):
            return name
    return None


def _suffix_end(text: str, end: int) -> int:
    """Where a name built on a meeting noun ends, with what follows it: "with Priya", or a dash and up to four
    more words ("- ACME", "- globex"). Capitalised words are taken as they come; lowercase ones (at most two)
    only when what follows them ends the name (a clause end, a day, a time, "recording is missing")."""
    if with_ := _WITH.match(text, end):
        return with_.end()
    dash = _DASH.match(text, end)
    if dash is None or dash.end() == end or not text[end:dash.end()].strip():
        return end
    words: list[re.Match[str]] = []
    position = dash.end()
    for word in _SUFFIX_WORD.finditer(text, position):
        token = word.group(0)
        lower = token.lower().rstrip("'’")
        if text[position:word.start()].strip() or len(words) == 4 or _not_part_of_name(token) \
                or (not token[0].isupper() and not token[0].isdigit()
                    and (lower in _NAME_STOP or lower in _SUFFIX_STOP or lower.endswith(("n't", "n’t"))
                         or sum(not w.group(0)[0].isupper() for w in words) == 2)):
            break
        words.append(word)
        position = word.end()
    for taken in range(len(words), 0, -1):
        if all(w.group(0)[0].isupper() or w.group(0)[0].isdigit() for w in words[:taken]) \
                or _AFTER_NAME.match(text, words[taken - 1].end()):
            return words[taken - 1].end()
    return end


def find_meeting_name(text: str) -> str | None:
    """A meeting name the customer gave: quoted, after "called", a run of capitalised words with a
    meeting noun ("Customer Onboarding – Globex"), a phrase built on a meeting noun ("the weekly design
    review", "the standup", "the Acme call"), or any other run of capitalised words."""
    found = _meeting_name(text)
    return found[0] if found else None


def _meeting_name(text: str) -> tuple[str, bool] | None:
    """The name and whether it was said as a name (quoted, "called …", capitalised with a meeting
    noun); a lowercase phrase or a capitalised run without one is a weaker reading."""
    for m in _QUOTED.finditer(text):
        name = _clean_name(m.group(1) or m.group(2))
        if name:
            return name, True
    if called := _CALLED.search(text):
        head = re.split(r"[.,;!?]|\s+(?:on|at|yesterday|today|last|from|was|is|and)\s+", called.group(1))[0]
        if name := _clean_name(head):
            return name, True
    runs = [c for c in (_clean_name(run.group(0)) for run in _CAPITALISED.finditer(text)) if c]
    for candidate in runs:
        if _NOUN.search(candidate):
            return candidate, True
    if phrase := _noun_phrase(text):
        return phrase, False
    for candidate in runs:
        if len(candidate.split()) >= 2:
            return candidate, False
    return None


# ---- the extractor a form uses ----

@dataclass(frozen=True)
class Extraction:
    details: Details
    """Only the fields this message gave."""
    when: When | None = None


class DetailExtractor:
    """Reads the fields of a policy's forms from customer messages."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def extract(self, text: str, fields: list[str], *, now: datetime, default_zone: str | None = None,
                asked: tuple[str, ...] = (), known: Details | None = None) -> Extraction:
        """The values of ``fields`` found in ``text``. ``now`` is when it was said; ``default_zone``
        the customer's known zone; ``asked`` the fields the bot's last question asked for, so that a
        bare answer ("Weekly Sync") fills the one field it answers; ``known`` what earlier messages
        gave: a name read only loosely (a lowercase phrase) does not replace one of those unless asked.

        A date is filled only when the customer named a day ("yesterday", "Tuesday", "Nov 3", "this
        morning"), never from a time alone or from a vaguer period ("last week", "a few weeks ago"). When
        ``asked`` includes the time, a bare hour ending the answer is the time ("it was 11")."""
        text = plain(text)
        kinds = {f: self.policy.field(f).kind for f in fields}
        values: dict[str, str] = {}
        mentioned = find_zone(text)
        zone_name = mentioned.name if mentioned else default_zone
        if "timezone" in kinds.values() and mentioned is not None:
            values[_first(kinds, "timezone")] = mentioned.name
        when: When | None = None
        if {"date", "time"} & set(kinds.values()):
            local_now = now.astimezone(ZoneInfo(zone_name)) if zone_name else now
            when = find_when(text, local_now)
            if (when is None or not when.has_time) and "time" in {kinds.get(f) for f in asked}:
                when = _with_asked_hour(text, when, local_now)
            if when is not None and mentioned is not None:
                when = When(when.value.astimezone(ZoneInfo(mentioned.name)), when.grain, when.has_date,
                            when.has_time, when.text)
            if when is not None and when.has_date and when.grain not in ("week", "month", "year") \
                    and "date" in kinds.values():
                values[_first(kinds, "date")] = when.date
            if when is not None and when.has_time and "time" in kinds.values():
                values[_first(kinds, "time")] = when.time
        for name, kind in kinds.items():
            if kind == "name":
                named = _meeting_name(text)
                found = named[0] if named else None
                if named and not named[1] and known is not None and known.model_dump().get(name) \
                        and name not in asked:
                    found = None  # "our team call" in a later message does not rename "Design Crit"
                if found is None and name in asked and when is None and mentioned is None:
                    found = _bare_answer(text, only=asked == (name,))
                if found:
                    values[name] = found
            elif kind == "pattern":
                pattern = self.policy.field(name).pattern
                assert pattern is not None
                if m := re.search(pattern, text, re.I):
                    values[name] = m.group(1) if m.groups() else m.group(0)
        return Extraction(Details(**values), when)

    def example(self, fields: Sequence[str]) -> str:
        """An answer giving ``fields`` in a form the bot reads ("yesterday at 3pm"), from the fields' examples."""
        return " ".join(e for e in (self.policy.field(f).example for f in fields) if e).strip(" ,")

    def summary(self, details: Details, fields: list[str]) -> str:
        """The details read back to the customer: "Weekly Sync, Thu 19 Nov 2026, 15:00 PST"."""
        values = details.model_dump()
        parts: list[str] = []
        day: date | None = None
        if values.get("date"):
            day = date.fromisoformat(values["date"])
        for name in fields:
            value = values.get(name)
            kind = self.policy.field(name).kind
            if not value:
                continue
            if kind == "date" and day is not None:
                parts.append(f"{day:%a} {day.day} {day:%b %Y}")
            elif kind == "time":
                label = value
                tz_name = values.get("timezone")
                if tz_name:
                    moment = datetime.combine(day or date.today(), datetime.strptime(value, "%H:%M").time())
                    label += " " + zone_label(tz_name, moment.replace(tzinfo=ZoneInfo(tz_name)))
                parts.append(label)
            elif kind == "timezone":
                if not values.get("time"):
                    parts.append(zone_label(value))
            else:
                parts.append(str(value))
        return ", ".join(parts)


def _first(kinds: Mapping[str, str], kind: str) -> str:
    return next(name for name, k in kinds.items() if k == kind)


_ANSWER_LEAD = re.compile(r"^(?:it.?s|it\s+is|it\s+was|the\s+meeting\s+(?:is|was)|called|named|sure[,!.]?|"
                          r"yes[,!.]?)\s+",
                          re.I)


_DETERMINER = re.compile(r"^(?:the|our|my|their|your|this|that)\s+(?=\S)", re.I)


_UNSURE = re.compile(r"\b(?:don.?t know|not sure|no idea|can.?t remember|don.?t remember|forgot)\b", re.I)


def unsure(text: str) -> bool:
    """Whether the customer says they do not know or remember ("no idea", "I forgot")."""
    return bool(_UNSURE.search(text))


_FILLER = frozenset({"hmm", "hm", "ok", "okay", "yes", "no", "sure", "thanks", "thank you", "what", "huh", "?", "hello",
                     "hi", "hey", "please", "help", "anyone", "ping"})


def _bare_answer(text: str, *, only: bool) -> str | None:
    """A short reply to "what was the meeting called?" taken as the name itself. When the question
    asked for several things, only an answer that looks like a name (capitalised, or several words)."""
    answer = _ANSWER_LEAD.sub("", text.strip()).strip(" .!\"'“”")
    answer = _DETERMINER.sub("", answer)  # "the board thing" names "board thing"
    if _UNSURE.search(answer) or answer.lower() in _FILLER:
        return None
    if not only and not (re.search(r"[A-Z]", answer) or len(answer.split()) >= 2):
        return None
    if not answer or len(answer.split()) > 8 or "?" in answer:
        return None
    return answer
