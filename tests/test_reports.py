"""The KPIs on a scripted history, against values computed by hand (README: KPIs), on SQLite and PostgreSQL.

The history is one week in November 2026 (Monday 2 to Sunday 8, New York time: UTC-5, business hours 9:00-18:00,
i.e. 14:00-23:00 UTC, Monday to Friday). Every conversation is written straight into the store's tables with
the times it would have had, so each figure below can be checked with a pencil.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot import reports
from bot.policy import BusinessHours, Policy
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

SINCE = datetime(2026, 11, 2, 5, tzinfo=UTC)  # Monday 2 November, 00:00 in New York
UNTIL = datetime(2026, 11, 9, 5, tzinfo=UTC)  # Monday 9 November, 00:00 in New York (excluded)
NOW = datetime(2026, 11, 10, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


@dataclass
class Past:
    """One conversation of the scripted history."""

    id: str
    customer: str
    intent: str
    started: datetime
    text: str = "How do I export a transcript?"
    severity: str = "low"
    route: str | None = None
    state: str = "open"
    bot_at: datetime | None = None
    escalated_at: datetime | None = None
    claimed_at: datetime | None = None
    staff_at: datetime | None = None
    resolved_at: datetime | None = None
    reopened_at: datetime | None = None
    csat: int | None = None
    rules: list[str] = field(default_factory=list)
    draft: tuple[str, float | None] | None = None  # (status, edit ratio), made in draft mode
    tags: list[tuple[str, str | None]] = field(default_factory=list)  # (tag, article)
    organisation: str = "Acme"


HISTORY = [
    Past("c0", "A", "how_to", at(1, 3), bot_at=at(1, 3)),  # before the period: not counted
    Past("c1", "A", "how_to", at(2, 15), bot_at=at(2, 15)),  # A asks again on Thursday: a repeat contact
    Past("c2", "A", "how_to", at(5, 16), bot_at=at(5, 16)),  # answered by the bot, nothing after: resolved
    # Friday 17:00 in New York, an hour before closing; answered on Monday at 10:30: 60 + 90 business minutes
    Past("c3", "B", "billing", at(6, 22), text="I was charged twice, refund me", severity="high", route="billing",
         state="resolved", escalated_at=at(6, 22), staff_at=at(9, 15, 30), resolved_at=at(9, 16), csat=2,
         rules=["billing.dispute", "route.billing"], tags=[("correct", None)], organisation="Globex"),
    Past("c4", "C", "meeting_issue", at(3, 14, 10), text="my recording is missing", severity="medium",
         route="support", state="open", escalated_at=at(3, 14, 10), staff_at=at(3, 14, 40), resolved_at=at(3, 15),
         reopened_at=at(5, 15), csat=5, rules=["form.meeting_issue.complete", "route.support"]),
    Past("c5", "D", "account_access", at(4, 20), text="I cannot log in", severity="critical", route="support",
         state="escalated", escalated_at=at(4, 20), rules=["tier.account_access.human", "route.support"],
         tags=[("unnecessary escalation", None)]),
    Past("c6", "E", "how_to", at(2, 16), bot_at=at(2, 16),
         tags=[("should have escalated", None), ("wrong article", "Exporting transcripts")]),
    Past("c7", "F", "how_to", at(3, 16), route="support", state="claimed", escalated_at=at(3, 16),
         staff_at=at(3, 16, 5), rules=["autonomy.draft"], draft=("approved", 0.0)),
    Past("c8", "G", "how_to", at(3, 17), route="support", state="claimed", escalated_at=at(3, 17),
         staff_at=at(3, 17, 10), rules=["autonomy.draft"], draft=("edited", 0.25)),
    Past("c9", "H", "how_to", at(3, 18), route="support", state="claimed", escalated_at=at(3, 18),
         staff_at=at(3, 18, 20), rules=["autonomy.draft"], draft=("rejected", None)),
    Past("c10", "I", "other", at(4, 15), text="Do you support SCORM export?", severity="medium", route="support",
         state="claimed", escalated_at=at(4, 15), staff_at=at(4, 15, 45), rules=["knowledge.no_answer"]),
    Past("c11", "J", "other", at(4, 16), text="do you support  SCORM export??", severity="medium",
         route="support", state="claimed", escalated_at=at(4, 16), staff_at=at(4, 17),
         rules=["knowledge.no_answer"], organisation="Globex"),
]


async def write(store: Store, history: list[Past]) -> None:
    """The history, straight into the tables (one transaction)."""
    async with store.transaction() as conn:
        for p in history:
            await conn.execute(conversations.insert().values(
                id=p.id, platform="slack", workspace="T0HOME", channel="C0SHARED", thread=p.id, customer_id=p.customer,
                organisation=p.organisation, state=p.state, intent=p.intent, severity=p.severity, route=p.route,
                details={}, csat=p.csat, started_at=p.started, updated_at=p.started,
                card_channel="C0INTERNAL" if p.escalated_at else None,
                card_ts=f"17000.{p.id[1:]}" if p.escalated_at else None))
            message_id = (await conn.execute(messages.insert().values(
                conversation_id=p.id, role="customer", author_id=p.customer, text=p.text, at=p.started)
                .returning(messages.c.id))).scalar_one()
            await conn.execute(decisions.insert().values(
                conversation_id=p.id, message_id=message_id, intent=p.intent, escalate=p.escalated_at is not None,
                severity=p.severity, route=p.route, rules=p.rules or ["knowledge.exporting"], inputs={}, output={},
                policy_version="test", at=p.started))
            moves: list[tuple[str | None, str, datetime]] = [(None, "open", p.started)]
            if p.bot_at:
                await conn.execute(messages.insert().values(
                    conversation_id=p.id, role="bot", author_id="bot", text="Here is how.", at=p.bot_at))
            if p.escalated_at:
                moves.append(("open", "escalated", p.escalated_at))
            if p.claimed_at:
                moves.append(("escalated", "claimed", p.claimed_at))
            if p.staff_at:
                await conn.execute(messages.insert().values(
                    conversation_id=p.id, role="staff", author_id="U0AGENT", text="On it.", at=p.staff_at))
            if p.resolved_at:
                moves.append(("escalated", "resolved", p.resolved_at))
            if p.reopened_at:
                moves.append(("resolved", "open", p.reopened_at))
            for before, after, when in moves:
                await conn.execute(transitions.insert().values(
                    conversation_id=p.id, from_state=before, to_state=after, cause="scripted", actor="test", at=when))
            if p.draft:
                status, ratio = p.draft
                await conn.execute(drafts.insert().values(
                    conversation_id=p.id, intent=p.intent, mode="draft", route=p.route, text="Draft.", citations=[],
                    status=status, created_at=p.started, decided_by="U0AGENT", decided_at=p.staff_at,
                    edit_ratio=ratio))
            for tag, article in p.tags:
                await conn.execute(reviews.insert().values(
                    conversation_id=p.id, reason="handoff", intent=p.intent, text="...", article=article,
                    created_at=p.started, tag=tag, tagged_by="U0LEAD", tagged_at=p.started))
        await conn.execute(autonomy_changes.insert().values(
            intent="how_to", mode="draft", previous="auto", by="baton", why="demoted: should have escalated",
            figures={}, at=at(3, 12)))


@pytest.fixture
async def report(store: Store, policy: Policy) -> reports.Report:
    await write(store, HISTORY)
    return await reports.build(store, policy, SINCE, UNTIL, now=NOW)


async def test_every_kpi_matches_the_hand_computed_value(report: reports.Report):
    kpis = report.to_json()["kpis"]
    assert {k: v for k, v in kpis.items() if k != "by_intent"} == {
        "conversations": 11,                      # c1-c11 (c0 started before the period)
        "bot_resolution_rate": round(2 / 11, 4),  # c2, c6 (c1: its customer came back about it on Thursday)
        "first_contact_resolution": round(3 / 11, 4),  # c2, c6 by the bot; c3 by a person (c4 was reopened)
        "repeat_contact_rate": round(1 / 11, 4),  # c1
        "escalation_accuracy": round(1 / 3, 4),   # tagged: c3 correct, c5 unnecessary, c6 missed
        "missed_escalations": 1,                  # c6
        "time_to_human_p50_minutes": 30.0,        # of 5, 10, 20, 30, 45, 60, 3930: the 4th
        "time_to_human_p90_minutes": 3930.0,      # the 7th (c3: Friday evening to Monday morning)
        "sla_breaches": 2,                        # c3 (due Friday 23:00 UTC), c5 (critical, never answered)
        "draft_edit_rate": 0.5,                   # c8 edited, c7 approved as written
        "drafts_rejected_rate": round(1 / 3, 4),  # c9 of c7, c8, c9
        "csat_average": 3.5,                      # c3: 2, c4: 5
        "csat_responses": 2,
    }
    how_to = kpis["by_intent"]["how_to"]
    assert (how_to["conversations"], how_to["bot_resolution_rate"], how_to["draft_edit_rate"],
            how_to["time_to_human_p50_minutes"], how_to["csat_average"]) == (6, round(2 / 6, 4), 0.5, 10.0, None)
    assert set(kpis["by_intent"]) == {"how_to", "billing", "meeting_issue", "account_access", "other"}
    assert kpis["by_intent"]["billing"]["sla_breaches"] == 1
    assert set(kpis["by_intent"]["other"]) == set(reports.KPI_KEYS)


async def test_time_to_human_by_severity_in_business_hours_and_on_the_clock(report: reports.Report):
    waited = report.to_json()["time_to_human"]
    assert waited["by_severity"] == {
        "low": {"count": 3, "p50_minutes": 10.0, "p90_minutes": 20.0, "p50_business_minutes": 10.0,
                "p90_business_minutes": 20.0},
        "medium": {"count": 3, "p50_minutes": 45.0, "p90_minutes": 60.0, "p50_business_minutes": 45.0,
                   "p90_business_minutes": 60.0},
        # across the weekend: 3,930 minutes on the clock, 150 of them in business hours
        "high": {"count": 1, "p50_minutes": 3930.0, "p90_minutes": 3930.0, "p50_business_minutes": 150.0,
                 "p90_business_minutes": 150.0},
    }
    assert (waited["p50_business_minutes"], waited["p90_business_minutes"]) == (30.0, 150.0)


async def test_the_rest_of_the_report(report: reports.Report):
    data = report.to_json()
    assert data["period"] == {"since": SINCE.isoformat(), "until": UNTIL.isoformat()}
    assert data["breakdowns"]["organisation"]["Globex"]["conversations"] == 2
    assert data["breakdowns"]["route"]["(none)"]["conversations"] == 3  # c1, c2, c6: the bot's own
    assert data["breakdowns"]["platform"]["slack"]["conversations"] == 11
    reasons = {r["rule"]: r["count"] for r in data["handoff_reasons"]}
    assert reasons == {"autonomy.draft": 3, "knowledge.no_answer": 2, "billing.dispute": 1,
                       "form.meeting_issue.complete": 1, "tier.account_access.human": 1}
    words = {r["rule"]: r["words"] for r in data["handoff_reasons"]}
    assert "help center does not answer" in words["knowledge.no_answer"]
    assert data["knowledge_gaps"]["unanswered"] == [
        {"question": "Do you support SCORM export?", "count": 2, "conversations": ["c10", "c11"]}]
    assert data["knowledge_gaps"]["articles"] == [{"article": "Exporting transcripts", "tag": "wrong article",
                                                   "count": 1}]
    assert data["review_tags"] == {"correct": 1, "unnecessary escalation": 1, "should have escalated": 1,
                                   "wrong article": 1}
    assert data["csat"]["bot"] == {"average": None, "responses": 0}
    assert data["csat"]["human"] == {"average": 3.5, "responses": 2}
    assert data["csat"]["by_intent"] == {"billing": {"average": 2.0, "responses": 1},
                                         "meeting_issue": {"average": 5.0, "responses": 1}}
    assert data["drafts"]["by_intent"] == {"how_to": {"decided": 3, "edited": 1, "rejected": 1, "edit_rate": 0.5,
                                                      "rejected_rate": round(1 / 3, 4), "mean_edit_ratio": 0.12}}
    assert data["autonomy"]["changes"] == [{"intent": "how_to", "mode": "draft", "previous": "auto", "by": "baton",
                                            "why": "demoted: should have escalated", "at": at(3, 12).isoformat()}]
    assert [d["date"] for d in data["daily"]] == [f"2026-11-0{d}" for d in range(2, 9)]
    assert {d["date"]: d["conversations"] for d in data["daily"]} == {
        "2026-11-02": 2, "2026-11-03": 4, "2026-11-04": 3, "2026-11-05": 1, "2026-11-06": 1, "2026-11-07": 0,
        "2026-11-08": 0}
    json.dumps(data)  # all of it is JSON


async def test_each_number_leads_to_its_conversations(report: reports.Report):
    def ids(kpi: str, **where: Any) -> list[str]:
        return sorted(r.id for r in report.drill(kpi, **where))

    assert ids("bot_resolution_rate") == ["c2", "c6"]
    assert ids("first_contact_resolution") == ["c2", "c3", "c6"]
    assert ids("repeat_contact_rate") == ["c1"]
    assert ids("sla_breaches") == ["c3", "c5"]
    assert ids("missed_escalations") == ["c6"]
    assert ids("escalation_accuracy") == ["c3", "c5", "c6"]
    assert ids("reopened") == ["c4"]
    assert ids("csat_responses") == ["c3", "c4"]
    assert ids("drafts_rejected_rate", intent="how_to") == ["c7", "c8", "c9"]
    assert ids("conversations", by="organisation", value="Globex") == ["c11", "c3"]
    with pytest.raises(KeyError):
        report.drill("happiness")
    # the mode each conversation was handled in: its draft's, else its intent's at that moment
    modes = {r.id: r.autonomy_mode for r in report.rows}
    assert (modes["c1"], modes["c2"], modes["c7"], modes["c3"]) == ("auto", "draft", "draft", "draft")


async def test_csv_is_one_row_per_conversation(report: reports.Report):
    rows = list(csv.DictReader(io.StringIO(reports.to_csv(report))))
    assert len(rows) == 11 and tuple(rows[0]) == reports.CSV_COLUMNS
    c3 = next(r for r in rows if r["id"] == "c3")
    assert c3 == {"id": "c3", "platform": "slack", "organisation": "Globex", "intent": "billing", "route": "billing",
                  "severity": "high", "escalated": "yes", "escalation_reasons": "billing.dispute",
                  "handoff_at": at(6, 22).isoformat(), "first_human_reply_at": at(9, 15, 30).isoformat(),
                  "resolved_at": at(9, 16).isoformat(), "reopened": "no", "csat": "2", "autonomy_mode": "draft",
                  "draft_edited": ""}
    assert next(r for r in rows if r["id"] == "c8")["draft_edited"] == "yes"
    assert next(r for r in rows if r["id"] == "c4")["reopened"] == "yes"


async def test_every_draft_counts_null_intents_repeat_nothing_and_a_resolution_needs_a_person(
        store: Store, policy: Policy):
    odd = [
        # an edited draft, then a later one the resolution superseded: the edit still counts
        Past("d1", "K", "how_to", at(3, 15), route="support", state="resolved", escalated_at=at(3, 15),
             staff_at=at(3, 15, 10), resolved_at=at(3, 16), draft=("edited", 0.4)),
        # two conversations of one customer whose intent was never known: not a repeat contact
        Past("d2", "L", "other", at(3, 15), bot_at=at(3, 15)),
        Past("d3", "L", "other", at(4, 15), bot_at=at(4, 15)),
        # escalated, then closed without anyone from the team writing: not resolved on first contact
        Past("d4", "M", "billing", at(3, 17), severity="medium", route="billing", state="resolved",
             escalated_at=at(3, 17), resolved_at=at(3, 18)),
        # claimed 3 minutes after the handoff (an approved draft claims too), answered later: a person had it at 3
        Past("d5", "N", "billing", at(3, 19), severity="medium", route="billing", state="claimed",
             escalated_at=at(3, 19), claimed_at=at(3, 19, 3), staff_at=at(3, 19, 30)),
    ]
    await write(store, odd)
    async with store.transaction() as conn:
        await conn.execute(drafts.insert().values(
            conversation_id="d1", intent="how_to", mode="draft", route="support", text="Later.", citations=[],
            status="superseded", created_at=at(3, 15, 30), decided_at=at(3, 16)))
        await conn.execute(conversations.update().where(conversations.c.id.in_(["d2", "d3"])).values(intent=None))
    report = await reports.build(store, policy, SINCE, UNTIL, now=NOW)
    kpis = report.to_json()["kpis"]
    assert kpis["draft_edit_rate"] == 1.0 and [r.id for r in report.drill("draft_edit_rate")] == ["d1"]
    assert kpis["repeat_contact_rate"] == 0.0
    assert sorted(r.id for r in report.drill("first_contact_resolution")) == ["d1", "d2", "d3"]
    assert [r.id for r in report.drill("sla_breaches")] == []  # d4: due at 21:00 UTC, resolved at 18:00
    d5 = next(r for r in report.rows if r.id == "d5")
    assert (d5.wait_minutes, d5.business_wait, d5.first_human_reply_at) == (3.0, 3.0, at(3, 19, 30))


async def test_an_empty_period_has_no_rates_and_no_errors(store: Store, policy: Policy):
    data = (await reports.build(store, policy, SINCE, UNTIL, now=NOW)).to_json()
    assert data["kpis"]["conversations"] == 0
    assert all(data["kpis"][k] is None for k in ("bot_resolution_rate", "escalation_accuracy", "csat_average",
                                                 "time_to_human_p50_minutes", "draft_edit_rate"))
    assert data["kpis"]["by_intent"] == {} and len(data["daily"]) == 7
    assert reports.to_csv(await reports.build(store, policy, SINCE, UNTIL)).count("\n") == 1
    with pytest.raises(ValueError):
        await reports.build(store, policy, UNTIL, SINCE)


def test_business_minutes_and_percentiles():
    hours = BusinessHours(timezone="America/New_York", days=["mon", "tue", "wed", "thu", "fri"],
                          start="09:00", end="18:00")  # type: ignore[arg-type]
    assert reports.business_minutes(hours, at(6, 22), at(9, 15, 30)) == 150.0  # Friday evening to Monday
    assert reports.business_minutes(hours, at(7, 12), at(8, 23)) == 0.0        # the weekend
    assert reports.business_minutes(hours, at(2, 10), at(2, 15)) == 60.0       # from before opening
    assert reports.business_minutes(hours, at(2, 15), at(2, 10)) == 0.0
    assert reports.business_minutes(hours, at(2, 14), at(9, 14)) == 5 * 9 * 60  # a whole week
    assert reports.percentile([1, 2, 3, 4], 0.5) == 2 and reports.percentile([1, 2, 3, 4], 0.9) == 4
    assert reports.percentile([], 0.5) is None


def test_a_spreadsheet_formula_in_a_cell_is_quoted():
    assert reports._safe_cell("=HYPERLINK(\"x\")") == "'=HYPERLINK(\"x\")"
    assert reports._safe_cell("Acme") == "Acme" and reports._safe_cell(3) == 3


# ---- the command ----


def run_report(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BATON_DATABASE_URL": f"sqlite+aiosqlite:///{db}"}
    return subprocess.run([sys.executable, "-m", "bot", "report", *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


async def test_the_report_command_reads_days_in_the_business_hours_zone(tmp_path: Path):
    db = tmp_path / "baton.db"
    store = Store(f"sqlite+aiosqlite:///{db}")
    await store.migrate()
    try:
        await write(store, HISTORY)
    finally:
        await store.close()
    done = run_report(db, "--since", "2026-11-02", "--until", "2026-11-08", "--format", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["period"] == {"since": SINCE.isoformat(), "until": UNTIL.isoformat()}
    assert data["kpis"]["conversations"] == 11 and data["kpis"]["missed_escalations"] == 1
    out = tmp_path / "week.csv"
    done = run_report(db, "--since", "2026-11-02", "--until", "2026-11-08", "--format", "csv", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "11 conversations" in done.stderr and out.read_text().count("\n") == 12
    page = tmp_path / "week.html"
    done = run_report(db, "--since", "2026-11-02", "--until", "2026-11-08", "--format", "html", "-o", str(page))
    assert done.returncode == 0, done.stderr
    html = page.read_text()
    assert html.count("<svg") >= 4 and "Do you support SCORM export?" in html and "<script" not in html
    done = run_report(db, "--since", "2026-11-09", "--until", "2026-11-02")
    assert done.returncode != 0 and "--until must come after --since" in done.stderr
    done = run_report(db, "--since", "last week")
    assert done.returncode != 0 and "not a date" in done.stderr
