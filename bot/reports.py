"""What a support lead reads: the KPIs of a period, per conversation and in total, and their exports.

:func:`build` reads the store once per table (a handful of aggregate queries, whatever the period's size) into
one :class:`Row` per conversation started in the period, and every figure is computed from those rows, so each
number can be traced back to the conversations behind it (:meth:`Report.drill`). The definitions, with their
formulas, are in the README ("KPIs"); this module is their only implementation: the report command, the
dashboard and the weekly digest all read it.
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, cast
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from rapidfuzz import fuzz

from bot import autonomy
from bot.handoff import explain
from bot.model import ConversationState, Role, Severity
from bot.policy import WEEKDAYS, BusinessHours, Policy
from bot.store import (
    Store,
    autonomy_changes,
    conversations,
    decisions,
    drafts,
    messages,
    reviews,
    transitions,
)

WINDOW = timedelta(days=7)
"""How long after a conversation a reopening or a repeat contact still counts against it."""
LONGEST = timedelta(days=3700)
"""The longest period a report covers (ten years and some)."""



@dataclass(frozen=True)
class Kpi:
    """How a KPI is shown: its label, a shorter one for the columns of wide tables, what kind of number it is
    (``count``, ``rate``, ``minutes`` or ``score``) and a few words of what it means (the README has the formula)."""

    label: str
    column: str
    kind: str
    hint: str


KPIS: dict[str, Kpi] = {
    "conversations": Kpi("Conversations", "Volume", "count", "started in the period"),
    "bot_resolution_rate": Kpi("Bot resolution rate", "Bot resolved", "rate",
                               "closed without a person, not reopened within 7 days"),
    "first_contact_resolution": Kpi("First-contact resolution", "First contact", "rate",
                                    "resolved with no reopening and no repeat contact"),
    "repeat_contact_rate": Kpi("Repeat contact rate", "Repeat contact", "rate",
                               "same customer, same intent, within 7 days"),
    "escalation_accuracy": Kpi("Escalation accuracy", "Escalation accuracy", "rate",
                               "of the conversations tagged in review, escalated (or not) rightly"),
    "missed_escalations": Kpi("Missed escalations", "Missed escalations", "count",
                              "tagged: should have gone to a person"),
    "time_to_human_p50_minutes": Kpi("Time to a human, p50", "To a human p50", "minutes",
                                     "from handoff to the first staff reply"),
    "time_to_human_p90_minutes": Kpi("Time to a human, p90", "To a human p90", "minutes",
                                     "from handoff to the first staff reply"),
    "sla_breaches": Kpi("SLA breaches", "SLA breaches", "count", "first staff reply after the SLA, or none yet"),
    "draft_edit_rate": Kpi("Draft edit rate", "Drafts edited", "rate", "of the drafts staff approved or edited"),
    "drafts_rejected_rate": Kpi("Drafts rejected", "Drafts rejected", "rate", "of the drafts staff decided"),
    "csat_average": Kpi("CSAT average", "CSAT", "score", "average of the 1 to 5 answers"),
    "csat_responses": Kpi("CSAT responses", "CSAT answers", "count", "answers to the CSAT question"),
}
"""The keys under ``kpis`` (and under each intent of ``kpis.by_intent``), in the order they are shown."""
KPI_KEYS = tuple(KPIS)

BREAKDOWNS = ("platform", "route", "organisation")
UNNEEDED, MISSED = "unnecessary escalation", "should have escalated"
"""The review tags that judge an escalation (see ``[review] tags`` in the policy)."""
DECIDED = ("approved", "edited", "rejected")
"""A draft a person decided on in ``draft`` mode (``answered``: a shadow draft, which measures agreement only)."""

CSV_COLUMNS = (
    "id", "platform", "organisation", "intent", "route", "severity", "escalated", "escalation_reasons",
    "handoff_at", "first_human_reply_at", "resolved_at", "reopened", "csat", "autonomy_mode", "draft_edited",
)


@dataclass(slots=True)
class Row:
    """One conversation, as every KPI sees it (not to be changed once built: a report's rows are its facts)."""

    id: str
    platform: str
    workspace: str
    organisation: str | None
    intent: str | None
    route: str | None
    severity: str | None
    state: str
    started_at: datetime
    escalated: bool
    escalation_reasons: tuple[str, ...]
    handoff_at: datetime | None
    first_human_at: datetime | None
    """When a person took it: its first staff message or its claim, whichever came first."""
    first_human_reply_at: datetime | None
    resolved_at: datetime | None
    reopened: bool
    repeat_contact: bool
    bot_resolved: bool
    first_contact_resolved: bool
    wait_minutes: float | None
    """:attr:`time_to_human` in minutes."""
    business_wait: float | None
    """:attr:`time_to_human` in business minutes (the policy's ``[business_hours]`` only)."""
    sla_breached: bool
    csat: int | None
    autonomy_mode: str | None
    drafts: tuple[str, ...]
    """What people decided on each of its drafts made in ``draft`` mode (approved, edited, rejected), in order."""
    draft_edited: bool | None
    tags: tuple[str, ...]
    card_channel: str | None
    card_ts: str | None

    @property
    def time_to_human(self) -> timedelta | None:
        """From the handoff to a person taking it (none before it: a person who was there first took no time)."""
        if self.handoff_at is None or self.first_human_at is None:
            return None
        return max(self.first_human_at - self.handoff_at, timedelta(0))

    @property
    def escalation_judged(self) -> bool:
        """A person tagged this conversation in review: its escalation (made or not) was looked at."""
        return bool(self.tags)

    @property
    def escalation_wrong(self) -> bool:
        return (UNNEEDED in self.tags and self.escalated) or MISSED in self.tags

    def cells(self) -> tuple[Any, ...]:
        """Its line of the CSV export, in the order of :data:`CSV_COLUMNS`."""
        return (
            self.id, self.platform, self.organisation or "", self.intent or "", self.route or "", self.severity or "",
            _yes(self.escalated), "; ".join(self.escalation_reasons), _iso(self.handoff_at),
            _iso(self.first_human_reply_at), _iso(self.resolved_at), _yes(self.reopened),
            "" if self.csat is None else self.csat, self.autonomy_mode or "",
            "" if self.draft_edited is None else _yes(self.draft_edited),
        )


DRILLS: dict[str, Callable[[Row], bool]] = {
    "conversations": lambda r: True,
    "bot_resolution_rate": lambda r: r.bot_resolved,
    "first_contact_resolution": lambda r: r.first_contact_resolved,
    "repeat_contact_rate": lambda r: r.repeat_contact,
    "escalation_accuracy": lambda r: r.escalation_judged,
    "missed_escalations": lambda r: MISSED in r.tags,
    "time_to_human_p50_minutes": lambda r: r.wait_minutes is not None,
    "time_to_human_p90_minutes": lambda r: r.wait_minutes is not None,
    "sla_breaches": lambda r: r.sla_breached,
    "draft_edit_rate": lambda r: "approved" in r.drafts or "edited" in r.drafts,
    "drafts_rejected_rate": lambda r: bool(r.drafts),
    "csat_average": lambda r: r.csat is not None,
    "csat_responses": lambda r: r.csat is not None,
    "escalated": lambda r: r.escalated,
    "reopened": lambda r: r.reopened,
}
"""The conversations behind each number: those it counts (a rate's numerator is a subset of these)."""


@dataclass(frozen=True)
class Report:
    """The KPIs of conversations started in ``[since, until)``, judged at ``generated_at``."""

    since: datetime
    until: datetime
    generated_at: datetime
    rows: list[Row]
    policy: Policy = field(repr=False)
    modes: dict[str, str] = field(default_factory=dict)
    changes: list[dict[str, Any]] = field(default_factory=list)
    unanswered: list[tuple[str, str]] = field(default_factory=list)
    """(conversation id, the customer's words) of every question the help center could not answer."""
    article_tags: list[tuple[str, str, str]] = field(default_factory=list)
    """(conversation id, article, tag) of every review tag that blames the help center."""
    draft_rows: list[dict[str, Any]] = field(default_factory=list)

    def drill(self, kpi: str, *, intent: str | None = None, by: str | None = None,
              value: str | None = None) -> list[Row]:
        """The conversations behind a number: ``kpi`` (a key of ``kpis``, or ``escalated``/``reopened``), for
        one ``intent``, or for one ``value`` of a breakdown (``by``: platform, route or organisation)."""
        if kpi not in DRILLS:
            raise KeyError(f"unknown KPI {kpi!r}; one of {', '.join(DRILLS)}")
        if by is not None and by not in BREAKDOWNS:
            raise KeyError(f"unknown breakdown {by!r}; one of {', '.join(BREAKDOWNS)}")
        keep = DRILLS[kpi]
        return [r for r in self.rows if keep(r) and (intent is None or _key(r.intent) == intent)
                and (by is None or _key(getattr(r, by)) == value)]

    def to_json(self) -> dict[str, Any]:
        """The report as the README documents it (``python -m bot report --format json``)."""
        rows = self.rows
        by_intent = _grouped(rows, "intent")
        return {
            "period": {"since": _iso(self.since), "until": _iso(self.until)},
            "generated_at": _iso(self.generated_at),
            "kpis": {**self._kpis(rows), "by_intent": {k: self._kpis(v) for k, v in by_intent.items()}},
            "breakdowns": {by: {k: self._kpis(v) for k, v in _grouped(rows, by).items()} for by in BREAKDOWNS},
            "time_to_human": self._time_to_human(rows),
            "handoff_reasons": self._handoff_reasons(rows),
            "drafts": {"by_intent": self._drafts()},
            "autonomy": {"current": dict(self.modes), "changes": self.changes},
            "csat": {
                "by_intent": {k: _csat(v) for k, v in by_intent.items() if any(r.csat is not None for r in v)},
                "bot": _csat([r for r in rows if not r.escalated]),
                "human": _csat([r for r in rows if r.escalated]),
            },
            "knowledge_gaps": {"unanswered": _gaps(self.unanswered), "articles": self._articles()},
            "review_tags": dict(Counter(t for r in rows for t in set(r.tags)).most_common()),
            "daily": self._daily(),
        }

    def _kpis(self, rows: Sequence[Row]) -> dict[str, Any]:
        n = len(rows)
        bot = first = repeat = judged = right = missed = breaches = 0
        waits: list[float] = []
        decided: Counter[str | None] = Counter()
        scores: list[int] = []
        for r in rows:  # one pass: a report over 100,000 conversations repeats this for every breakdown value
            bot += r.bot_resolved
            first += r.first_contact_resolved
            repeat += r.repeat_contact
            breaches += r.sla_breached
            if r.escalation_judged:
                judged += 1
                right += not r.escalation_wrong
                missed += MISSED in r.tags
            if r.wait_minutes is not None:
                waits.append(r.wait_minutes)
            decided.update(r.drafts)
            if r.csat is not None:
                scores.append(r.csat)
        waits.sort()
        return {
            "conversations": n,
            "bot_resolution_rate": _rate(bot, n),
            "first_contact_resolution": _rate(first, n),
            "repeat_contact_rate": _rate(repeat, n),
            "escalation_accuracy": _rate(right, judged),
            "missed_escalations": missed,
            "time_to_human_p50_minutes": percentile(waits, 0.5),
            "time_to_human_p90_minutes": percentile(waits, 0.9),
            "sla_breaches": breaches,
            "draft_edit_rate": _rate(decided["edited"], decided["approved"] + decided["edited"]),
            "drafts_rejected_rate": _rate(decided["rejected"], sum(decided[s] for s in DECIDED)),
            "csat_average": _mean(scores),
            "csat_responses": len(scores),
        }

    def _time_to_human(self, rows: Sequence[Row]) -> dict[str, Any]:
        waited = [r for r in rows if r.wait_minutes is not None]

        def figures(of: Sequence[Row]) -> dict[str, Any]:
            wall = sorted(cast(float, r.wait_minutes) for r in of)
            business = sorted(cast(float, r.business_wait) for r in of)
            return {"count": len(of), "p50_minutes": percentile(wall, 0.5), "p90_minutes": percentile(wall, 0.9),
                    "p50_business_minutes": percentile(business, 0.5),
                    "p90_business_minutes": percentile(business, 0.9)}

        by_severity = {str(s): figures([r for r in waited if r.severity == str(s)])
                       for s in Severity if any(r.severity == str(s) for r in waited)}
        total = figures(waited)
        return {"by_severity": by_severity, "p50_business_minutes": total["p50_business_minutes"],
                "p90_business_minutes": total["p90_business_minutes"]}

    def _handoff_reasons(self, rows: Sequence[Row]) -> list[dict[str, Any]]:
        counted = Counter(rule for r in rows if r.escalated for rule in r.escalation_reasons)
        return [{"rule": rule, "words": explain(rule, self.policy) or rule.replace("_", " "), "count": count}
                for rule, count in counted.most_common()]

    def _drafts(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for intent, items in sorted(_group_dicts(self.draft_rows, "intent").items()):
            status = Counter(d["status"] for d in items if d["mode"] == "draft")
            decided = sum(status[s] for s in DECIDED)
            ratios = [float(d["edit_ratio"]) for d in items if d["edit_ratio"] is not None]
            out[intent] = {"decided": decided, "edited": status["edited"], "rejected": status["rejected"],
                           "edit_rate": _rate(status["edited"], status["approved"] + status["edited"]),
                           "rejected_rate": _rate(status["rejected"], decided),
                           "mean_edit_ratio": _mean(ratios)}
        return out

    def _articles(self) -> list[dict[str, Any]]:
        counted = Counter((article, tag) for _, article, tag in self.article_tags)
        return [{"article": article, "tag": tag, "count": count} for (article, tag), count in counted.most_common()]

    def _daily(self) -> list[dict[str, Any]]:
        zone = ZoneInfo(self.policy.business_hours.timezone)
        days: dict[date, Counter[str]] = {}
        first = self.since.astimezone(zone).date()
        last = (self.until - timedelta(microseconds=1)).astimezone(zone).date()
        for n in range(min((last - first).days + 1, 3660)):
            days[first + timedelta(days=n)] = Counter()
        local: dict[int, date] = {}  # the day of each quarter hour (no zone's offset changes within one)
        for r in self.rows:
            quarter = int(r.started_at.timestamp()) // 900
            day = local.get(quarter)
            if day is None:
                day = local[quarter] = r.started_at.astimezone(zone).date()
            tally = days.setdefault(day, Counter())
            tally["conversations"] += 1
            tally["bot_resolved"] += r.bot_resolved
            tally["escalated"] += r.escalated
            tally["resolved"] += r.resolved_at is not None
        return [{"date": d.isoformat(), **{k: tally[k] for k in ("conversations", "bot_resolved", "escalated",
                                                                   "resolved")}} for d, tally in sorted(days.items())]


async def build(store: Store, policy: Policy, since: datetime, until: datetime, *,
                now: datetime | None = None) -> Report:
    """The report of the conversations started in ``[since, until)``, as the store holds them ``now``."""
    since, until = _aware(since), _aware(until)
    if until <= since:
        raise ValueError("the period must end after it starts")
    if until - since > LONGEST:
        raise ValueError(f"a report covers at most {LONGEST.days} days")
    now = _aware(now) if now is not None else datetime.now(UTC)
    c, t, m, d, r, v, a = (table.c for table in (conversations, transitions, messages, decisions, drafts, reviews,
                                                  autonomy_changes))
    ids = sa.select(c.id).where((c.started_at >= since) & (c.started_at < until)).scalar_subquery()
    escalated_state, resolved_state = ConversationState.escalated.value, ConversationState.resolved.value
    claimed_state = ConversationState.claimed.value
    moves = sa.select(
        t.conversation_id.label("cid"),
        sa.func.min(sa.case((t.to_state == escalated_state, t.at))).label("escalated_at"),
        sa.func.min(sa.case((t.to_state == resolved_state, t.at))).label("first_resolved"),
        sa.func.max(sa.case((t.to_state == resolved_state, t.at))).label("resolved_at"),
        sa.func.min(sa.case((t.from_state == resolved_state, t.at))).label("left_resolved"),
        sa.func.min(sa.case((t.to_state == claimed_state, t.at))).label("claimed_at"),
    ).where(t.conversation_id.in_(ids)).group_by(t.conversation_id).subquery()
    said = sa.select(
        m.conversation_id.label("cid"),
        sa.func.min(sa.case((m.role == Role.staff.value, m.at))).label("staff_at"),
        sa.func.min(sa.case((m.role == Role.bot.value, m.at))).label("bot_at"),
    ).where(m.conversation_id.in_(ids) & m.role.in_([Role.staff.value, Role.bot.value])) \
        .group_by(m.conversation_id).subquery()
    queries: dict[str, sa.Select[Any]] = {
        # the period's conversations, each with its lifecycle's moments and its first staff and bot messages;
        # then those of the week after it (for repeat contacts: their moments are not read)
        "found": sa.select(c.id, c.platform, c.workspace, c.customer_id, c.organisation, c.state, c.intent,
                           c.severity, c.route, c.csat, c.started_at, c.card_channel, c.card_ts,
                           moves.c.escalated_at, moves.c.first_resolved, moves.c.resolved_at, moves.c.left_resolved,
                           moves.c.claimed_at, said.c.staff_at, said.c.bot_at)
        .select_from(conversations.outerjoin(moves, moves.c.cid == c.id).outerjoin(said, said.c.cid == c.id))
        .where((c.started_at >= since) & (c.started_at < until + WINDOW)).order_by(c.started_at, c.id),
        "reasons": sa.select(d.conversation_id, d.rules).where(d.conversation_id.in_(ids) & d.escalate)
        .order_by(d.conversation_id, d.at, d.id),
        "unanswered": sa.select(d.conversation_id, m.text).select_from(decisions.join(messages, d.message_id == m.id))
        .where(d.conversation_id.in_(ids) & sa.cast(d.rules, sa.Text).like('%"knowledge.no_answer"%'))
        .order_by(d.at, d.id),
        "drafts": sa.select(r.conversation_id, r.intent, r.mode, r.status, r.edit_ratio)
        .where(r.conversation_id.in_(ids) & (r.status != "pending")).order_by(r.id),
        "tagged": sa.select(v.conversation_id, v.tag, v.article).where(v.conversation_id.in_(ids) & v.tag.is_not(None))
        .order_by(v.id),
        "history": sa.select(a.intent, a.mode, a.previous, a.by, a.why, a.at).order_by(a.at, a.id),
    }

    async def fetch(query: sa.Select[Any]) -> Sequence[Any]:
        async with store.transaction() as conn:
            rows: Sequence[Any] = (await conn.execute(query)).all()
            return rows

    if store.in_transaction:  # one connection: one query at a time
        read = [await fetch(q) for q in queries.values()]
    else:  # PostgreSQL works on the next query while this process reads the last one's rows
        read = list(await asyncio.gather(*(fetch(q) for q in queries.values())))
    got: dict[str, Sequence[Any]] = dict(zip(queries, read, strict=True))
    modes = await autonomy.modes(store, policy)
    # The rows and their figures are plain Python over every conversation of the period: off the event loop,
    # so that a long report in a live process (the dashboard, the digest) never holds acknowledgements up.
    return await asyncio.to_thread(_assemble, policy, since, until, now, got, modes)


def _assemble(policy: Policy, since: datetime, until: datetime, now: datetime, got: dict[str, Sequence[Any]],
              modes: dict[str, Any]) -> Report:
    """The report from what :func:`build` read."""
    found = got["found"]
    reasons: dict[str, tuple[str, ...]] = {}
    for cid, rules in got["reasons"]:
        if cid not in reasons:
            reasons[cid] = tuple(x for x in (rules or []) if isinstance(x, str) and not x.startswith("route."))
    unanswered = [(cid, text) for cid, text in got["unanswered"]]
    draft_rows = [dict(row._mapping) for row in got["drafts"]]
    tagged = got["tagged"]
    history = [dict(row._mapping) for row in got["history"]]

    tags: dict[str, list[str]] = defaultdict(list)
    knowledge_tags = set(policy.review.knowledge)
    article_tags: list[tuple[str, str, str]] = []
    for cid, tag, article in tagged:
        tags[cid].append(tag)
        if tag in knowledge_tags:
            article_tags.append((cid, article or "(no article)", tag))
    latest_draft = {row["conversation_id"]: row for row in draft_rows}
    decided_drafts: dict[str, list[str]] = defaultdict(list)
    for row in draft_rows:
        if row["mode"] == "draft" and row["status"] in DECIDED:
            decided_drafts[row["conversation_id"]].append(row["status"])
    starts: dict[tuple[str, str, str | None], list[datetime]] = defaultdict(list)
    for found_row in found:
        starts[(found_row[1], found_row[3], found_row[6])].append(_aware(found_row[10]))
    mode_at = _modes_over_time(policy, history)
    hours = policy.business_hours

    rows: list[Row] = []
    GATHERING = ConversationState.gathering.value  # noqa: N806
    for (cid, platform, workspace, customer, organisation, state, intent, severity, route, csat, started,
         card_channel, card_ts, *moments) in found:
        started = _aware(started)
        if started >= until:
            break  # the week after: read for repeat contacts only
        escalated_at, first_resolved, resolved_at, left_resolved, claimed_at, staff, bot_said = \
            [None if x is None else _aware(x) for x in moments]
        # a person took it: the first staff message or the claim (an approved draft claims), as the SLA timer sees it
        human_at = min(staff, claimed_at) if staff and claimed_at else staff or claimed_at
        reopened = bool(first_resolved and left_resolved and left_resolved > first_resolved
                        and left_resolved - first_resolved <= WINDOW)
        repeat = intent is not None and any(started < other <= started + WINDOW
                                            for other in starts[(platform, customer, intent)])
        escalated = escalated_at is not None
        bot_resolved = (not escalated and human_at is None and bot_said is not None
                        and state != GATHERING and not reopened and not repeat)
        wait = business_minutes(hours, escalated_at, human_at) if escalated_at and human_at else None
        waited = max(human_at - escalated_at, timedelta(0)) if escalated_at and human_at else None
        breached = _breached(policy, severity or str(policy.escalation.min_severity), escalated_at,
                             max(human_at, escalated_at) if human_at and escalated_at else resolved_at or now, wait)
        draft = latest_draft.get(cid)
        judged = tuple(decided_drafts.get(cid, ()))
        rows.append(Row(
            id=cid, platform=platform, workspace=workspace, organisation=organisation, intent=intent, route=route,
            severity=severity, state=state, started_at=started, escalated=escalated,
            escalation_reasons=reasons.get(cid, ()) if escalated else (), handoff_at=escalated_at,
            first_human_at=human_at, first_human_reply_at=staff, resolved_at=resolved_at, reopened=reopened,
            repeat_contact=repeat, bot_resolved=bot_resolved,
            first_contact_resolved=bot_resolved or (resolved_at is not None and human_at is not None and not reopened
                                                    and not repeat),
            wait_minutes=None if waited is None else waited.total_seconds() / 60,
            business_wait=wait, sla_breached=breached, csat=csat,
            autonomy_mode=(draft["mode"] if draft else mode_at(intent, started)),
            drafts=judged, draft_edited=("edited" in judged) if "approved" in judged or "edited" in judged else None,
            tags=tuple(tags.get(cid, ())), card_channel=card_channel, card_ts=card_ts,
        ))
    changes = [{**h, "at": _iso(_aware(h["at"]))} for h in history if since <= _aware(h["at"]) < until]
    return Report(since=since, until=until, generated_at=now, rows=rows, policy=policy,
                  modes={k: str(v) for k, v in modes.items()}, changes=changes, unanswered=unanswered,
                  article_tags=article_tags, draft_rows=draft_rows)


def to_csv(report: Report) -> str:
    """One line per conversation (``python -m bot report --format csv``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows([_safe_cell(v) for v in row.cells()] for row in report.rows)
    return out.getvalue()


# ---- the arithmetic, as the README defines it ----


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile of sorted values: the smallest value with at least ``q`` of them at or below
    it (p50 of 1, 2, 3, 4 is 2); ``None`` for no values."""
    if not ordered:
        return None
    return round(float(ordered[max(0, math.ceil(q * len(ordered)) - 1)]), 2)


def business_minutes(hours: BusinessHours, start: datetime, end: datetime, *, cap: float | None = None) -> float:
    """Minutes of business hours (the policy's days, start to end, in its zone) between ``start`` and ``end``
    (counting stops past ``cap``, for a caller that only needs to know whether they exceed it)."""
    if end <= start:
        return 0.0
    zone = ZoneInfo(hours.timezone)
    open_days = _weekdays(tuple(hours.days))
    day = start.astimezone(zone).date()
    last = end.astimezone(zone).date()
    total = 0.0
    while day <= last:
        if day.weekday() in open_days:
            opens = datetime.combine(day, hours.start, zone)
            closes = datetime.combine(day, hours.end, zone)
            overlap = (min(end, closes) - max(start, opens)).total_seconds()
            total += max(overlap, 0.0)
            if cap is not None and total > cap * 60:
                break
        day += timedelta(days=1)
    return round(total / 60, 2)


@lru_cache(maxsize=8)
def _weekdays(days: tuple[str, ...]) -> frozenset[int]:
    """The weekday numbers of the policy's business days (asked once per report row: kept)."""
    return frozenset(WEEKDAYS.index(d) for d in days)


def _breached(policy: Policy, severity: str | None, handoff: datetime | None, answered: datetime,
              wait: float | None) -> bool:
    """Whether the first human reply (or, with none, ``answered`` = now) came after the SLA's due time: more
    business minutes than the severity's SLA passed, or exactly as many and the reply came after the due moment
    (out of hours, after the last business minute)."""
    if handoff is None or severity is None or severity not in Severity.__members__:
        return False
    limit = policy.sla_minutes[severity]
    spent = business_minutes(policy.business_hours, handoff, answered, cap=limit) if wait is None else wait
    if spent != limit:
        return spent > limit
    return answered > policy.sla_due(Severity[severity], handoff)


# ---- how a number is shown (the report, the dashboard, the digest) ----


def show(value: Any, kind: str) -> str:
    """A value of a kind of number (see :class:`bot.reports.Kpi`) as text; ``n/a`` for none."""
    if value is None:
        return "n/a"
    if kind == "rate":
        return f"{float(value):.1%}"
    if kind == "minutes":
        return minutes(float(value))
    if kind == "score":
        return f"{float(value):.2f} / 5"
    if kind == "ratio":
        return f"{float(value):.2f}"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.2f}"
    if isinstance(value, int | float):
        return f"{int(value):,}"
    return str(value)


def minutes(value: float | None) -> str:
    """``42 min``, ``3 h 05 min``, ``2 d 4 h``; ``n/a`` for nothing measured."""
    if value is None:
        return "n/a"
    if value < 1:
        return f"{value * 60:.0f} s"
    if value < 60:
        return f"{value:.0f} min" if value >= 10 else f"{value:.1f} min"
    total = round(value)
    if total < 24 * 60:
        return f"{total // 60} h {total % 60:02d} min"
    return f"{total // (24 * 60)} d {total % (24 * 60) // 60} h"


def when(value: datetime | str | None) -> str:
    """A moment (a datetime, or ISO text) as a person reads it: ``2026-11-02 14:05 UTC``; a bare date stays a
    date. A datetime without a zone is UTC (SQLite gives stored times back so)."""
    if not value:
        return "n/a"
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    else:
        try:
            moment = datetime.fromisoformat(value)
        except (TypeError, ValueError):
            return str(value)
        if len(value) <= 10:
            return moment.date().isoformat()
    offset = moment.utcoffset()
    zone = "UTC" if offset == timedelta(0) else ("" if offset is None else moment.strftime("UTC%z"))
    return f"{moment:%Y-%m-%d %H:%M} {zone}".rstrip()


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def _csat(rows: Sequence[Row]) -> dict[str, Any]:
    scores = [r.csat for r in rows if r.csat is not None]
    return {"average": _mean(scores), "responses": len(scores)}


def _key(value: str | None) -> str:
    return value if value else "(none)"


def _grouped(rows: Iterable[Row], by: str) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        out[_key(getattr(r, by))].append(r)
    return dict(sorted(out.items()))


def _group_dicts(items: Iterable[dict[str, Any]], by: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        out[_key(item[by])].append(item)
    return out


_WORDS = re.compile(r"[^\w\s]+")


def _gaps(unanswered: Sequence[tuple[str, str]], *, limit: int = 20, similar: float = 85) -> list[dict[str, Any]]:
    """The questions the help center could not answer, grouped: the same words (case, punctuation and spacing
    aside) are one question, and so are wordings close enough by token-set similarity (rapidfuzz)."""
    exact: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for cid, text in unanswered:
        key = " ".join(_WORDS.sub(" ", text.lower()).split())[:300]
        if key:
            exact[key].append((cid, text))
    groups: list[tuple[str, list[tuple[str, str]]]] = []
    for key, items in sorted(exact.items(), key=lambda kv: -len(kv[1]))[:500]:
        for seen_key, seen in groups:
            if fuzz.token_set_ratio(key, seen_key) >= similar:
                seen.extend(items)
                break
        else:
            groups.append((key, list(items)))
    groups.sort(key=lambda g: -len({cid for cid, _ in g[1]}))
    out = []
    for _, items in groups[:limit]:
        ids = list(dict.fromkeys(cid for cid, _ in items))
        out.append({"question": items[0][1][:300], "count": len(ids), "conversations": ids})
    return out


def _modes_over_time(policy: Policy, history: Sequence[dict[str, Any]]) -> Callable[[str | None, datetime], str | None]:
    """The mode each intent was in at a moment: its starting mode, then each recorded change from its time on."""
    by_intent: dict[str, list[tuple[datetime, str, str]]] = defaultdict(list)
    for h in history:
        by_intent[h["intent"]].append((_aware(h["at"]), h["mode"], h["previous"]))

    first = {intent: str(autonomy.starting(policy, intent)) for intent in policy.intents}

    def at(intent: str | None, moment: datetime) -> str | None:
        if intent is None or intent not in policy.intents:
            return None
        changes = by_intent.get(intent)
        if not changes:
            return first[intent]
        mode = changes[0][2]
        for when, new, _ in changes:
            if when > moment:
                break
            mode = new
        return mode

    return at


def _aware(value: datetime) -> datetime:
    if value.tzinfo is UTC:  # PostgreSQL's, as asyncpg reads them
        return value
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _safe_cell(value: Any) -> Any:
    """A cell a spreadsheet will not run: text starting with = + - @ (a formula) is quoted with an apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
