"""The weekly digest in the support leads' Slack channel (``BATON_LEADS_CHANNEL``).

Once a week (``BATON_DIGEST_AT``, a weekday and a time in the business-hours zone; Monday 09:00 unless
set), the last seven full days against the seven before: the headline KPIs of :mod:`bot.reports`, each
with its change (an arrow and the difference, in percentage points for rates), the volume chart of
:mod:`bot.charts` as a PNG, the questions the help center could not answer most often, and the
promotions :mod:`bot.autonomy` proposes that wait for a lead.

Every process may run the timer: the first to insert the week's row in ``digests`` posts it, the others
see the row and do nothing, so a deployment of N web processes posts one digest a week. A process that
claimed the week and died before posting leaves a claim that goes stale after :data:`STALE`; another
process then takes it over.

Everything that came from a customer (their questions) or a person (a promotion's reasons, article names)
goes through :func:`adapters.slack_blocks.escape`: no mention, link or broadcast survives.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import structlog
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from adapters import slack_blocks as blocks
from bot import autonomy, charts, reports
from bot.policy import WEEKDAYS, Policy
from bot.store import Store, digests

if TYPE_CHECKING:
    from slack_sdk.web.async_client import AsyncWebClient

    from bot.settings import Settings

log = structlog.get_logger(__name__)

PERIOD = timedelta(days=7)
TOP_GAPS = 5
QUESTION = 150
"""Characters of a customer's question shown."""
STALE = timedelta(minutes=30)
"""A claim not posted after this long is taken over: its process died between claiming and posting."""
RETRY = timedelta(minutes=10)
"""How soon the timer tries again after a failed post, or while another process holds the week's claim."""



# ---- the figures ----


@dataclass(frozen=True)
class Figure:
    """One KPI this week and the week before."""

    key: str
    kind: str
    """As :data:`bot.reports.KPIS` has it: count, rate, minutes or score."""
    now: float | None
    before: float | None

    @property
    def label(self) -> str:
        return charts.kpi_label(self.key)

    @property
    def change(self) -> float | None:
        """This week minus the week before (rates in percentage points), rounded as shown; ``None`` when
        either week has no figure."""
        if self.now is None or self.before is None:
            return None
        diff = float(self.now) - float(self.before)
        if self.kind == "rate":
            return round(diff * 100, 1)
        if self.kind == "score":
            return round(diff, 2)
        if self.kind == "minutes":
            return round(diff, 1)
        return round(diff)

    @property
    def arrow(self) -> str:
        change = self.change
        return "" if change is None else "\u2191" if change > 0 else "\u2193" if change < 0 else "\u2192"

    def change_text(self) -> str:
        """``↑ 4.2 pp``, ``↓ 12 min``, ``→ 0``; empty when either week has no figure."""
        change = self.change
        if change is None:
            return ""
        size = abs(change)
        amount = {"rate": f"{size:.1f} pp", "score": f"{size:.2f}", "count": f"{size:,.0f}",
                  "minutes": reports.minutes(size) if size else "0 min"}[self.kind]
        return f"{self.arrow} {amount}"

    def text(self) -> str:
        """The value this week, its change and, in brackets, the week before's value."""
        if self.now is None and self.before is None:
            return "n/a"
        if self.before is None:
            return f"{charts.fmt(self.key, self.now)}  _(none the week before)_"
        change = self.change_text()
        return (f"{charts.fmt(self.key, self.now)}  {change + '  ' if change else ''}"
                f"_(was {charts.fmt(self.key, self.before)})_")


def headline(current: dict[str, Any], previous: dict[str, Any]) -> list[Figure]:
    """The digest's figures from two reports' JSON (``Report.to_json()``): this week's and the week before's."""
    now, before = current.get("kpis") or {}, previous.get("kpis") or {}
    return [Figure(key, kpi.kind, _number(now.get(key)), _number(before.get(key)))
            for key, kpi in reports.KPIS.items()]


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class Gap:
    question: str
    count: int


@dataclass(frozen=True)
class Promotion:
    intent: str
    mode: str
    proposed: str
    why: str


@dataclass(frozen=True)
class Digest:
    """A week's digest: its figures, what Slack shows (``text`` for notifications, ``blocks``) and the chart."""

    week: str
    """The ISO week it is posted in (``2026-W50``): the key that makes it once a week."""
    since: datetime
    until: datetime
    zone: str
    figures: list[Figure]
    gaps: list[Gap]
    flagged_articles: int
    promotions: list[Promotion]
    png: bytes | None
    blocks: list[dict[str, Any]] = field(default_factory=list)
    text: str = ""

    @property
    def filename(self) -> str:
        return f"baton-volume-{self.week}.png"


def period(now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The seven full days (in ``zone``) before ``now``'s day: ``[since, until)``, midnight to midnight."""
    local = now.astimezone(zone)
    until = datetime.combine(local.date(), time(0), tzinfo=zone)
    since = datetime.combine(local.date() - PERIOD, time(0), tzinfo=zone)
    return since.astimezone(UTC), until.astimezone(UTC)


def week_of(moment: datetime, zone: ZoneInfo) -> str:
    year, week, _ = moment.astimezone(zone).isocalendar()
    return f"{year}-W{week:02d}"


async def compose(store: Store, policy: Policy, *, now: datetime, chart: bool = True) -> Digest:
    """The digest as of ``now``: the seven full days before ``now``'s day (in the business-hours zone)
    against the seven before them. ``chart=False`` leaves the PNG out (it takes a moment to draw)."""
    zone = ZoneInfo(policy.business_hours.timezone)
    since, until = period(now, zone)
    current = await asyncio.to_thread((await reports.build(store, policy, since, until, now=now)).to_json)
    previous = await asyncio.to_thread((await reports.build(store, policy, *period(since, zone), now=now)).to_json)
    gaps = sorted((current.get("knowledge_gaps") or {}).get("unanswered") or [], key=lambda g: -int(g["count"]))
    articles = (current.get("knowledge_gaps") or {}).get("articles") or []
    table = await autonomy.table(store, policy)
    digest = Digest(
        week=week_of(now, zone), since=since, until=until, zone=policy.business_hours.timezone,
        figures=headline(current, previous),
        gaps=[Gap(str(g["question"]), int(g["count"])) for g in gaps[:TOP_GAPS]],
        flagged_articles=sum(int(a.get("count") or 0) for a in articles),
        promotions=[Promotion(intent, row["mode"], row["proposed"], row["why"])
                    for intent, row in table.items() if row.get("proposed")],
        # Drawing takes about a second of CPU: off the event loop, which acknowledges platforms' events.
        png=await asyncio.to_thread(_chart, previous, current) if chart else None,
    )
    text, shown = render(digest)
    return replace(digest, blocks=shown, text=text)


def _chart(previous: dict[str, Any], current: dict[str, Any]) -> bytes:
    """The volume chart over both weeks (fourteen days), as a PNG."""
    _title, build = charts.CHARTS["volume"]
    return charts.png(build({"daily": [*(previous.get("daily") or []), *(current.get("daily") or [])]}))


# ---- Block Kit ----


def _days(digest: Digest) -> str:
    zone = ZoneInfo(digest.zone)
    first = digest.since.astimezone(zone)
    last = (digest.until - timedelta(microseconds=1)).astimezone(zone)
    return f"{first:%a %d %b} \u2013 {last:%a %d %b %Y}"


def _question(text: str) -> str:
    line = " ".join(text.split())
    return blocks.escape(line if len(line) <= QUESTION else line[:QUESTION - 1].rstrip() + "\u2026")


def render(digest: Digest) -> tuple[str, list[dict[str, Any]]]:
    """The notification text and the blocks of ``digest``: a header, the figures as section fields (ten at
    most per section), the top knowledge gaps, the pending promotions and a context line."""
    days = _days(digest)
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"Weekly digest: {days}"[:150]}},
        {"type": "context", "elements": [blocks._mrkdwn(
            f"The conversations started in the last 7 days ({digest.zone}) against the 7 days before. "
            "Rates change in percentage points (pp).")]},
    ]
    fields = [blocks._mrkdwn(f"*{figure.label}*\n{figure.text()}") for figure in digest.figures]
    for start in range(0, len(fields), 10):
        out.append({"type": "section", "fields": fields[start:start + 10]})
    out.append({"type": "divider"})
    if digest.gaps:
        lines = [f"{n}. {_question(gap.question)}  ({gap.count}\u00d7)" for n, gap in enumerate(digest.gaps, 1)]
        out.append(blocks._section("*Top knowledge gaps*: what the help center could not answer\n" + "\n".join(lines)))
    else:
        out.append(blocks._section("*Top knowledge gaps*: the help center answered every question it was asked."))
    if digest.flagged_articles:
        out.append({"type": "context", "elements": [blocks._mrkdwn(
            f"{digest.flagged_articles} review tag(s) called a help-center article wrong or outdated: see "
            "`python -m bot report`.")]})
    if digest.promotions:
        lines = [f"\u2022 *{blocks.escape(p.intent)}*: {p.mode} \u2192 *{p.proposed}* ({blocks.escape(p.why)}); "
                 f"confirm with `python -m bot autonomy --promote {blocks.escape(p.intent)}`"
                 for p in digest.promotions]
        out.append(blocks._section("*Promotions waiting for a lead*\n" + "\n".join(lines)))
    else:
        out.append(blocks._section("*Promotions waiting for a lead*: none."))
    out.append({"type": "context", "elements": [blocks._mrkdwn(
        "The volume chart follows. Every number, and the conversations behind it: `python -m bot report` "
        "or the dashboard.")]})
    conversations = next((f for f in digest.figures if f.key == "conversations"), None)
    text = f"Baton's weekly digest, {days}"
    if conversations is not None:
        text += f": {charts.fmt('conversations', conversations.now)} conversations"
        text += f" ({conversations.change_text()})" if conversations.change_text() else ""
    return text, out


# ---- posting ----


async def post(client: AsyncWebClient, channel: str, digest: Digest) -> None:
    """Post ``digest`` in ``channel``: the blocks, then the chart. Raises what the Web API raises."""
    await post_message(client, channel, digest)
    await post_chart(client, channel, digest)


async def post_message(client: AsyncWebClient, channel: str, digest: Digest) -> None:
    """The digest's message (``chat:write``)."""
    await client.chat_postMessage(channel=channel, text=digest.text, blocks=digest.blocks, unfurl_links=False,
                                  unfurl_media=False, link_names=False)


async def post_chart(client: AsyncWebClient, channel: str, digest: Digest) -> None:
    """The chart as a file in the channel (slack-sdk's ``files_upload_v2``: an upload URL, the bytes, then
    ``files.completeUploadExternal``; ``files:write``)."""
    if digest.png:
        await client.files_upload_v2(channel=channel, file=digest.png, filename=digest.filename,
                                     title=f"Volume and resolution per day, {_days(digest)} and the week before",
                                     alt_txt="Conversations per day over two weeks, with those the bot resolved "
                                             "and those escalated")


# ---- once a week, across processes ----


@dataclass(frozen=True)
class Schedule:
    """When the digest is posted: a weekday (0 is Monday) and a time, in the business-hours zone."""

    weekday: int = 0
    at: time = time(9, 0)

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """``"mon 09:00"``, ``"friday 16:30"``; ValueError with a readable message otherwise."""
        match = re.fullmatch(r"\s*([a-zA-Z]+)\s+(\d{1,2}):(\d{2})\s*", text)
        day = match.group(1).lower()[:3] if match else ""
        if not match or day not in WEEKDAYS or int(match.group(2)) > 23 or int(match.group(3)) > 59:
            raise ValueError(f"BATON_DIGEST_AT={text!r}: give a weekday and a time, e.g. 'mon 09:00'")
        return cls(WEEKDAYS.index(day), time(int(match.group(2)), int(match.group(3))))

    def slot(self, now: datetime, zone: ZoneInfo) -> datetime:
        """This week's moment to post (Monday to Sunday of ``now``'s week, in ``zone``), in UTC."""
        local = now.astimezone(zone).date()
        day = local - timedelta(days=local.weekday() - self.weekday)
        return datetime.combine(day, self.at, tzinfo=zone).astimezone(UTC)

    def next_slot(self, now: datetime, zone: ZoneInfo) -> datetime:
        """The first moment to post after ``now``."""
        slot = self.slot(now, zone)
        if slot > now:
            return slot
        day = slot.astimezone(zone).date() + PERIOD
        return datetime.combine(day, self.at, tzinfo=zone).astimezone(UTC)


Outcome = Literal["early", "posted", "done", "busy", "failed"]
"""What one tick did: too early this week, posted the week's digest, found it posted, found another
process posting it, or failed (the claim is released, for a retry)."""


def _me() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def claim(store: Store, week: str, channel: str, *, now: datetime, me: str) -> bool:
    """Take the week's digest on: insert its row if absent (one process wins), or take over a claim that went
    stale unposted. True when ``me`` may post it."""
    now = now.astimezone(UTC)
    async with store.transaction() as conn:
        insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
        inserted = await conn.execute(insert(digests).values(
            week=week, channel=channel, claimed_by=me, claimed_at=now).on_conflict_do_nothing(
            index_elements=["week"]))
        if inserted.rowcount == 1:
            return True
        taken = await conn.execute(digests.update().where(
            (digests.c.week == week) & digests.c.posted_at.is_(None) & (digests.c.claimed_at < now - STALE))
            .values(claimed_by=me, claimed_at=now, channel=channel))
        return taken.rowcount == 1


async def _posted(store: Store, week: str, me: str, *, now: datetime) -> None:
    async with store.transaction() as conn:
        await conn.execute(digests.update().where((digests.c.week == week) & (digests.c.claimed_by == me))
                           .values(posted_at=now))


async def _release(store: Store, week: str, me: str) -> None:
    async with store.transaction() as conn:
        await conn.execute(digests.delete().where((digests.c.week == week) & (digests.c.claimed_by == me)
                                                  & digests.c.posted_at.is_(None)))


async def _state(store: Store, week: str) -> Outcome:
    async with store.transaction() as conn:
        row = (await conn.execute(sa.select(digests.c.posted_at).where(digests.c.week == week))).first()
    return "done" if row is not None and row.posted_at is not None else "busy"


async def tick(store: Store, policy: Policy, client: AsyncWebClient, channel: str, *, now: datetime,
               schedule: Schedule = Schedule(), chart: bool = True) -> Outcome:
    """Post this week's digest if its moment has come and no process has taken it on yet."""
    zone = ZoneInfo(policy.business_hours.timezone)
    now = now.astimezone(UTC)  # SQLite compares stored moments as text: always UTC
    slot = schedule.slot(now, zone)
    if now < slot:
        return "early"
    week, me = week_of(slot, zone), _me()
    if not await claim(store, week, channel, now=now, me=me):
        return await _state(store, week)
    try:
        digest = await compose(store, policy, now=slot, chart=chart)
        await post_message(client, channel, digest)
    except Exception as exc:
        await _release(store, week, me)
        log.warning("digest_failed", week=week, channel=channel, error=f"{type(exc).__name__}: {exc}"[:300])
        return "failed"
    await _posted(store, week, me, now=datetime.now(UTC))  # the message is out: the week is done, chart or not
    log.info("digest_posted", week=week, channel=channel)
    try:
        await post_chart(client, channel, digest)
    except Exception as exc:  # e.g. an install without files:write: the message stands, the chart is missing
        log.warning("digest_chart_failed", week=week, channel=channel, error=f"{type(exc).__name__}: {exc}"[:300])
    return "posted"


async def weekly(store: Store, policy: Policy, client: AsyncWebClient, channel: str, *,
                 schedule: Schedule = Schedule(), clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
    """The timer: run forever (until cancelled), posting each week's digest at its moment. A process that
    starts after this week's moment posts the week's digest if no one has; after a failure, or while another
    process holds a claim, it looks again after :data:`RETRY`."""
    zone = ZoneInfo(policy.business_hours.timezone)
    log.info("digest_scheduled", channel=channel, weekday=WEEKDAYS[schedule.weekday],
             at=schedule.at.isoformat("minutes"), zone=policy.business_hours.timezone)
    while True:
        try:
            outcome = await tick(store, policy, client, channel, now=clock(), schedule=schedule)
        except Exception as exc:  # the database: try again later, the timer must not die
            log.warning("digest_check_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            outcome = "failed"
        now = clock()
        wake = schedule.next_slot(now, zone)
        if outcome in ("failed", "busy"):
            wake = min(wake, now + RETRY)
        await sleep(max(1.0, (wake - now).total_seconds()))


def timer(settings: Settings, store: Store, policy: Policy,
          client: AsyncWebClient) -> Coroutine[Any, Any, None] | None:
    """The weekly timer for :class:`bot.app.Application` to start as a task, or ``None`` (said once in the
    log) when ``BATON_LEADS_CHANNEL`` is unset. Raises ValueError for a ``BATON_DIGEST_AT`` it cannot read."""
    schedule = Schedule.parse(settings.digest_at)
    if not settings.leads_channel:
        log.info("digest_off", reason="BATON_LEADS_CHANNEL is not set")
        return None
    return weekly(store, policy, client, settings.leads_channel, schedule=schedule)


def dump(digest: Digest) -> dict[str, Any]:
    """What ``python -m bot digest --dry-run`` prints: the period, the text and the blocks."""
    return {"week": digest.week, "since": digest.since.isoformat(), "until": digest.until.isoformat(),
            "text": digest.text, "blocks": digest.blocks}
