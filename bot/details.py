"""Structured-detail gathering: the meeting's name, date, time and time zone from free text.

Dates and times are parsed by dateparser in the customer's time zone. Before it sees the text, a
few support-chat conventions that it does not know are written in words it does ("eight tonight"
-> "today 20:00", "a couple of hours" -> "2 hours"); after it, a date or time that has no year,
no direction word and lands in the future is moved to its most recent past occurrence, because a
customer reporting a meeting is talking about one that already happened ("at 2pm" said at 10am is
yesterday 2pm, "Tuesday" is the last Tuesday, "Dec 3" in November is last December).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from bot.model import Details
from bot.policy import Policy, zone

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
    # a range means its start: "3-4pm", "between 9:30 and 11:00", "from 13 to 15 July", "Aug 27th - 29th"
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


def resolve(phrase: str, now: datetime, *, prefer: Literal["past", "future"] = "past") -> When | None:
    """Resolve one date/time phrase said at ``now`` (an aware datetime in the customer's zone)."""
    tz = now.tzinfo
    if _NOW.match(phrase) or _DEADLINE.match(phrase):
        # "by EOM", "by 2pm": a deadline runs from now.
        return When(now, "second", True, True, phrase)
    stated_zone = find_zone(phrase)
    if stated_zone is not None:
        phrase_wo_zone = (phrase[:stated_zone.span[0]] + phrase[stated_zone.span[1]:]).strip()
        local = resolve(phrase_wo_zone, now.astimezone(ZoneInfo(stated_zone.name)), prefer=prefer)
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
    """"Monday, Feb 18" with no year: pick the nearest year in which Feb 18 is a Monday."""
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


# ---- periods dateparser does not know: weeks, "beginning of", "first Monday of", "last two weeks" ----

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
    r"|today|yesterday|tonight|(?:this|yesterday|tomorrow)\s+(?:morning|afternoon|evening)|"
    r"\d+\s+(?:days?|weeks?|hours?)\s+ago|last\s+week|"
    r"\d{1,2}(?::\d{2})?\s*(?:am|pm|a\.m\.|p\.m\.)|\d{1,2}:\d{2}|at\s+\d{1,2}(?::\d{2})?|noon|midnight)"
    r"(?:\s*(?:at|@|,)?\s*(?:\d{1,2}(?::\d{2})?\s*(?:am|pm|a\.m\.|p\.m\.)?|noon|midnight|(?:this|in the)\s+"
    r"(?:morning|afternoon|evening)|morning|afternoon|evening|tonight))*", re.I)


def find_when(text: str, now: datetime) -> When | None:
    """The meeting's date and/or time in a customer's message, merged from every phrase found."""
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
        when = resolve(phrase, now)
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


# ---- names ----

_QUOTED = re.compile(r"[\"“”«]([^\"“”«»\n]{2,80})[\"“”»]|(?<![\w])['‘]([^'‘’\n]{2,80})['’](?![\w])")
_CALLED = re.compile(r"\b(?:called|named|titled|entitled)\s+([\w&'’:#+-]+(?:\s+[\w&'’:#+-]+){0,7})", re.I)
_CAPITALISED = re.compile(r"\b([A-Z][\w&'’+-]*|[0-9][\w&]*)(?:\s+(?:[A-Z0-9][\w&'’+-]*|&|and|of|with|the|for|x|-|/))*"
                          r"\s+[A-Z0-9][\w&'’+-]*")
MEETING_NOUNS = ("meeting", "call", "sync", "standup", "stand-up", "review", "demo", "interview", "webinar", "1:1",
                 "one-on-one", "kickoff", "retro", "session", "planning", "huddle", "catch-up", "check-in")
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


def _clean_name(name: str) -> str | None:
    words = name.strip(" .,:;!?-").split()
    while words and _not_part_of_name(words[0]):
        words.pop(0)
    while words and (_not_part_of_name(words[-1])
                     or words[-1].lower() in ("at", "on", "with", "of", "for", "and", "the", "-", "/", "time")):
        words.pop()
    if not words:
        return None
    cleaned = " ".join(words)
    if re.fullmatch(r"[\d\s:/.apm-]+", cleaned, re.I):
        return None
    return cleaned


def find_meeting_name(text: str) -> str | None:
    """A meeting name the customer gave: quoted, after "called", or a run of capitalised words."""
    for m in _QUOTED.finditer(text):
        name = _clean_name(m.group(1) or m.group(2))
        if name:
            return name
    if called := _CALLED.search(text):
        head = re.split(r"[.,;!?]|\s+(?:on|at|yesterday|today|last|from|was|is|and)\s+", called.group(1))[0]
        if name := _clean_name(head):
            return name
    for run in _CAPITALISED.finditer(text):
        candidate = _clean_name(run.group(0))
        if candidate and (len(candidate.split()) >= 2 or candidate.lower().endswith(MEETING_NOUNS)):
            return candidate
    # "the Acme call": one capitalised word before a meeting noun
    single = re.search(r"\b([A-Z][\w&'’-]+)\s+(" + "|".join(re.escape(n) for n in MEETING_NOUNS) + r")\b", text)
    if single and single.group(1).lower() not in _NOT_NAMES and not _CALENDAR_WORDS.match(single.group(1)):
        return f"{single.group(1)} {single.group(2)}"
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
                asked: tuple[str, ...] = ()) -> Extraction:
        """The values of ``fields`` found in ``text``. ``now`` is when it was said; ``default_zone``
        the customer's known zone; ``asked`` the fields the bot's last question asked for, so that a
        bare answer ("Weekly Sync") fills the one field it answers."""
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
            if when is not None and mentioned is not None:
                when = When(when.value.astimezone(ZoneInfo(mentioned.name)), when.grain, when.has_date,
                            when.has_time, when.text)
            if when is not None and when.has_date and "date" in kinds.values():
                values[_first(kinds, "date")] = when.date
            if when is not None and when.has_time and "time" in kinds.values():
                values[_first(kinds, "time")] = when.time
        for name, kind in kinds.items():
            if kind == "name":
                found = find_meeting_name(text)
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


_UNSURE = re.compile(r"\b(?:don.?t know|not sure|no idea|can.?t remember|don.?t remember|forgot)\b", re.I)


_FILLER = frozenset({"hmm", "hm", "ok", "okay", "yes", "no", "sure", "thanks", "thank you", "what", "huh", "?", "hello",
                     "hi", "hey", "please", "help", "anyone", "ping"})


def _bare_answer(text: str, *, only: bool) -> str | None:
    """A short reply to "what was the meeting called?" taken as the name itself. When the question
    asked for several things, only an answer that looks like a name (capitalised, or several words)."""
    answer = _ANSWER_LEAD.sub("", text.strip()).strip(" .!\"'“”")
    if _UNSURE.search(answer) or answer.lower() in _FILLER:
        return None
    if not only and not (re.search(r"[A-Z]", answer) or len(answer.split()) >= 2):
        return None
    if not answer or len(answer.split()) > 8 or "?" in answer:
        return None
    return answer
