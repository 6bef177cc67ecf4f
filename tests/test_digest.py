"""The weekly digest (#16): the headline KPIs of the last 7 days against the 7 before, the volume chart,
the top knowledge gaps and the pending promotions, posted once a week to the leads' channel.

A scripted history (two weeks of conversations, written to the store with hand-chosen times) on SQLite
and PostgreSQL; the real slack-sdk client against the local Web API fake (its v2 file upload included);
two timers racing on one store; the command's dry run in this process. No sleeps: the timer's clock and
sleep are handed in.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import structlog
from slack_fake import LEADS, TOKEN, FakeSlack
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import digest, reports
from bot.policy import Policy
from bot.settings import Settings
from bot.store import Store, conversations, decisions, drafts, messages, transitions

NY = ZoneInfo("America/New_York")  # the shipped policy's business-hours zone
NOW = datetime(2026, 12, 7, 10, 0, tzinfo=NY)  # a Monday: the digest covers Mon 30 Nov to Sun 6 Dec
HOSTILE = "<!channel> where is the <https://evil.example|export> button? @here *now* <@U0KIM>"


def local(day: int, hour: int, minute: int = 0, month: int = 12) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=NY).astimezone(UTC)


class History:
    """Conversations written straight to the store, each at the moment the test says."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.n = 0

    async def conversation(self, started: datetime, *, intent: str, state: str, severity: str | None = None,
                           route: str | None = None, csat: int | None = None) -> str:
        self.n += 1
        cid = f"conv-{self.n:03d}"
        async with self.store.transaction() as conn:
            await conn.execute(conversations.insert().values(
                id=cid, platform="slack", workspace="T0CUSTOMER", channel="C0SHARED", thread=f"{self.n}.000100",
                customer_id=f"U0C{self.n:03d}", organisation="Acme", state=state, intent=intent, severity=severity,
                route=route, details={}, csat=csat, started_at=started, updated_at=started))
            await conn.execute(messages.insert().values(conversation_id=cid, role="customer", author_id="U0C",
                                                        text="hello", at=started))
        return cid

    async def say(self, cid: str, role: str, at: datetime, text: str = "ok") -> int:
        async with self.store.transaction() as conn:
            done = await conn.execute(messages.insert().values(conversation_id=cid, role=role, author_id=role,
                                                               text=text, at=at))
        return int(done.inserted_primary_key[0])

    async def move(self, cid: str, from_state: str, to_state: str, at: datetime) -> None:
        async with self.store.transaction() as conn:
            await conn.execute(transitions.insert().values(conversation_id=cid, from_state=from_state,
                                                           to_state=to_state, cause="test", actor="test", at=at))

    async def decide(self, cid: str, message_id: int, at: datetime, *, intent: str, rules: list[str],
                     escalate: bool = False) -> None:
        async with self.store.transaction() as conn:
            await conn.execute(decisions.insert().values(
                conversation_id=cid, message_id=message_id, intent=intent, escalate=escalate, severity="low",
                rules=rules, inputs={}, output={}, policy_version="test", at=at))

    async def bot_resolved(self, started: datetime, *, csat: int | None) -> str:
        cid = await self.conversation(started, intent="how_to", state="resolved", csat=csat)
        await self.say(cid, "bot", started + timedelta(minutes=1))
        await self.move(cid, "open", "resolved", started + timedelta(minutes=5))
        return cid

    async def handed_off(self, started: datetime, *, wait: timedelta, intent: str, csat: int | None = None,
                         resolved: bool = True) -> str:
        cid = await self.conversation(started, intent=intent, state="resolved" if resolved else "claimed",
                                      severity="high", route="support", csat=csat)
        await self.move(cid, "open", "escalated", started)
        await self.say(cid, "staff", started + wait)
        if resolved:
            await self.move(cid, "claimed", "resolved", started + wait + timedelta(minutes=30))
        return cid


async def script(store: Store) -> None:
    """Two weeks, in the policy's zone (New York, UTC-5 then):

    the week before (23-29 Nov): one conversation the bot resolved (CSAT 5), one handed off and answered
    by a person after 10 minutes; the week (30 Nov - 6 Dec): one the bot resolved (CSAT 5), a handoff
    answered after 30 minutes (CSAT 3), one answered after 90 (past its 60-minute SLA), and a question the
    help center could not answer, left gathering. Long before: 20 bug-report drafts staff approved as they
    were, so bug_report's promotion from draft to auto waits for a lead.
    """
    history = History(store)
    await history.bot_resolved(local(24, 10, month=11), csat=5)
    await history.handed_off(local(25, 10, month=11), wait=timedelta(minutes=10), intent="billing")
    await history.bot_resolved(local(1, 10), csat=5)
    await history.handed_off(local(2, 10), wait=timedelta(minutes=30), intent="billing", csat=3)
    await history.handed_off(local(3, 10), wait=timedelta(minutes=90), intent="bug_report", resolved=False)
    gap = await history.conversation(local(4, 10), intent="how_to", state="gathering")
    asked = await history.say(gap, "customer", local(4, 10, 1), HOSTILE)
    await history.decide(gap, asked, local(4, 10, 1), intent="how_to", rules=["knowledge.no_answer"])
    old = await history.conversation(local(1, 10, month=11), intent="bug_report", state="resolved")
    async with store.transaction() as conn:
        for n in range(20):
            at = local(1, 11, n, month=11)
            await conn.execute(drafts.insert().values(
                conversation_id=old, intent="bug_report", mode="draft", text="Thanks, fixed.", citations=[],
                status="approved", created_at=at, decided_by="U0SAM", decided_at=at, final_text="Thanks, fixed.",
                edit_ratio=0.0))


# ---- the figures ----


async def test_figures_against_a_scripted_history(store: Store, policy: Policy) -> None:
    await script(store)
    found = await digest.compose(store, policy, now=NOW, chart=False)

    assert found.week == "2026-W50"
    assert (found.since, found.until) == (local(30, 0, month=11), local(7, 0))
    figures = {f.key: f for f in found.figures}
    assert [f.key for f in found.figures] == list(reports.KPI_KEYS)
    expected = {  # (this week, the week before, the change as told)
        "conversations": (4, 2, "\u2191 2"),
        "bot_resolution_rate": (0.25, 0.5, "\u2193 25.0 pp"),
        "first_contact_resolution": (0.5, 1.0, "\u2193 50.0 pp"),
        "repeat_contact_rate": (0.0, 0.0, "\u2192 0.0 pp"),
        "escalation_accuracy": (None, None, ""),
        "missed_escalations": (0, 0, "\u2192 0"),
        "time_to_human_p50_minutes": (30.0, 10.0, "\u2191 20 min"),
        "time_to_human_p90_minutes": (90.0, 10.0, "\u2191 1 h 20 min"),
        "sla_breaches": (1, 0, "\u2191 1"),
        "draft_edit_rate": (None, None, ""),
        "drafts_rejected_rate": (None, None, ""),
        "csat_average": (4.0, 5.0, "\u2193 1.00"),
        "csat_responses": (2, 1, "\u2191 1"),
    }
    assert {k: (f.now, f.before, f.change_text()) for k, f in figures.items()} == expected
    assert figures["bot_resolution_rate"].text() == "25.0%  \u2193 25.0 pp  _(was 50.0%)_"
    assert figures["escalation_accuracy"].text() == "n/a"

    assert [(g.question, g.count) for g in found.gaps] == [(HOSTILE, 1)]
    assert [(p.intent, p.mode, p.proposed) for p in found.promotions] == [("bug_report", "draft", "auto")]
    shown = json.dumps(found.blocks)
    assert "python -m bot autonomy --promote bug_report" in shown
    assert found.text.startswith("Baton's weekly digest, Mon 30 Nov \u2013 Sun 06 Dec 2026: 4 conversations (\u2191 2)")


def test_a_figure_missing_the_week_before_says_so() -> None:
    figure = digest.Figure("csat_average", "score", 4.5, None)
    assert figure.change is None and figure.text() == "4.50 / 5  _(none the week before)_"
    dropped = digest.Figure("time_to_human_p50_minutes", "minutes", None, 12.0)
    assert dropped.text() == "n/a  _(was 12 min)_"


def test_the_blocks_escape_what_customers_wrote() -> None:
    found = digest.Digest(
        week="2026-W50", since=local(30, 0, month=11), until=local(7, 0), zone="America/New_York",
        figures=[digest.Figure("conversations", "count", 3, 3)], gaps=[digest.Gap(HOSTILE, 4)], flagged_articles=0,
        promotions=[digest.Promotion("billing", "draft", "auto", "approved unedited 95% <!here>")], png=None)
    _text, shown = digest.render(found)
    raw = json.dumps(shown, ensure_ascii=False)
    for markup in ("<!channel>", "<!here>", "<https://evil.example", "<@U0KIM>"):
        assert markup not in raw
    assert "&lt;!channel&gt;" in raw and "@\u2060here" in raw
    assert shown[0]["type"] == "header" and all(len(b.get("fields", [])) <= 10 for b in shown)
    assert all(len(b["text"]["text"]) <= 3000 for b in shown if b["type"] == "section" and "text" in b)
    assert "(4\u00d7)" in raw


# ---- posting: blocks, then the chart through the v2 upload ----


@pytest.fixture
async def slack_client(fake: tuple[FakeSlack, str]) -> AsyncIterator[tuple[FakeSlack, AsyncWebClient]]:
    server, url = fake
    yield server, AsyncWebClient(token=TOKEN, base_url=url)


async def test_the_digest_and_its_chart_arrive_in_the_leads_channel(
        sqlite_store: Store, policy: Policy, slack_client: tuple[FakeSlack, AsyncWebClient]) -> None:
    fake, client = slack_client
    await script(sqlite_store)
    found = await digest.compose(sqlite_store, policy, now=NOW)
    assert found.png is not None and found.png.startswith(b"\x89PNG\r\n\x1a\n")

    await digest.post(client, LEADS, found)

    [posted] = fake.posts(LEADS)
    assert posted["blocks"] == found.blocks and posted["text"] == found.text
    [asked] = fake.ok("files.getUploadURLExternal")
    assert asked.args["filename"] == "baton-volume-2026-W50.png" and int(asked.args["length"]) == len(found.png)
    [upload] = fake.ok("upload")
    file_id = asked.answer["file_id"]
    assert upload.args == {"file_id": file_id, "length": len(found.png)}
    [done] = fake.ok("files.completeUploadExternal")
    assert done.args["channel_id"] == LEADS and done.answer["ok"]
    assert [f["id"] for f in done.args["files"]] == [file_id]
    assert fake.uploads[file_id]["data"] == found.png and fake.uploads[file_id]["completed"]
    [shared] = [m for m in fake.messages_in(LEADS) if m.get("files")]
    assert shared["files"][0]["id"] == file_id
    methods = [c.method for c in fake.calls]
    assert methods == ["chat.postMessage", "files.getUploadURLExternal", "upload", "files.completeUploadExternal"]


async def test_the_fake_refuses_an_upload_that_never_arrived(
        slack_client: tuple[FakeSlack, AsyncWebClient]) -> None:
    fake, client = slack_client
    asked = await client.files_getUploadURLExternal(filename="x.png", length=10)
    with pytest.raises(SlackApiError) as refused:
        await client.files_completeUploadExternal(files=[{"id": asked["file_id"]}], channel_id=LEADS)
    assert refused.value.response["error"] == "file_not_found"
    assert LEADS not in fake.messages


# ---- once a week, whatever the number of processes ----


async def test_two_timers_racing_on_one_week_post_once(
        store: Store, policy: Policy, slack_client: tuple[FakeSlack, AsyncWebClient]) -> None:
    fake, client = slack_client
    await script(store)

    slept: list[float] = []

    async def stop(seconds: float) -> None:  # each timer's first wait ends it
        slept.append(seconds)
        raise asyncio.CancelledError

    timers = [digest.weekly(store, policy, client, LEADS, clock=lambda: NOW.astimezone(UTC), sleep=stop)
              for _ in range(2)]
    ended = await asyncio.gather(*timers, return_exceptions=True)

    assert all(isinstance(e, asyncio.CancelledError) for e in ended)
    assert len(fake.posts(LEADS)) == 1 and len(fake.ok("files.completeUploadExternal")) == 1
    until_next_monday = (datetime(2026, 12, 14, 9, 0, tzinfo=NY) - NOW).total_seconds()
    # the poster waits for next week; the other too, or (it saw the claim before the post) looks again soon
    assert until_next_monday in slept and set(slept) <= {until_next_monday, digest.RETRY.total_seconds()}
    later = NOW + timedelta(hours=3)
    assert await digest.tick(store, policy, client, LEADS, now=later, chart=False) == "done"
    assert len(fake.posts(LEADS)) == 1
    async with store.transaction() as conn:
        rows = (await conn.execute(sa.select(digest.digests))).all()
    assert [(r.week, r.channel, r.posted_at is not None) for r in rows] == [("2026-W50", LEADS, True)]


async def test_before_its_moment_nothing_is_posted_nor_claimed(
        sqlite_store: Store, policy: Policy, slack_client: tuple[FakeSlack, AsyncWebClient]) -> None:
    fake, client = slack_client
    early = datetime(2026, 12, 7, 8, 59, tzinfo=NY)
    assert await digest.tick(sqlite_store, policy, client, LEADS, now=early, chart=False) == "early"
    assert fake.calls == []


async def test_a_failed_post_gives_the_week_back_and_a_stale_claim_is_taken_over(
        sqlite_store: Store, policy: Policy, slack_client: tuple[FakeSlack, AsyncWebClient]) -> None:
    fake, client = slack_client
    fake.fail("chat.postMessage", 500)
    assert await digest.tick(sqlite_store, policy, client, LEADS, now=NOW, chart=False) == "failed"
    assert await digest.tick(sqlite_store, policy, client, LEADS, now=NOW, chart=False) == "posted"
    assert len(fake.posts(LEADS)) == 1

    week = "2026-W51"  # a process claimed next week, then died before posting
    async with sqlite_store.transaction() as conn:
        await conn.execute(digest.digests.insert().values(week=week, channel=LEADS, claimed_by="gone:1:x",
                                                          claimed_at=(NOW + timedelta(days=7)).astimezone(UTC)))
    next_week = NOW + timedelta(days=7, minutes=10)
    assert await digest.tick(sqlite_store, policy, client, LEADS, now=next_week, chart=False) == "busy"
    assert await digest.tick(sqlite_store, policy, client, LEADS, now=next_week + digest.STALE,
                             chart=False) == "posted"
    assert len(fake.posts(LEADS)) == 2


async def test_a_chart_that_cannot_be_uploaded_never_posts_the_message_twice(
        sqlite_store: Store, policy: Policy, slack_client: tuple[FakeSlack, AsyncWebClient]) -> None:
    """An install without files:write: the message is out, so the week is done; the chart is logged missing."""
    fake, client = slack_client
    fake.fail("files.getUploadURLExternal", 403, times=3)
    assert await digest.tick(sqlite_store, policy, client, LEADS, now=NOW) == "posted"
    assert await digest.tick(sqlite_store, policy, client, LEADS, now=NOW + timedelta(minutes=10)) == "done"
    assert len(fake.posts(LEADS)) == 1 and not fake.uploads


async def test_the_timer_wakes_at_each_weeks_moment(
        sqlite_store: Store, policy: Policy, slack_client: tuple[FakeSlack, AsyncWebClient]) -> None:
    fake, client = slack_client
    clock = [datetime(2026, 12, 8, 15, 0, tzinfo=NY).astimezone(UTC)]  # started on Tuesday: Monday's was missed
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 2:
            raise asyncio.CancelledError
        clock[0] += timedelta(seconds=seconds)

    monday = digest.Schedule(0, time(9, 0))
    with pytest.raises(asyncio.CancelledError):
        await digest.weekly(sqlite_store, policy, client, LEADS, schedule=monday, clock=lambda: clock[0],
                            sleep=sleep)

    assert len(fake.posts(LEADS)) == 2  # this week's, late, then next Monday's at 09:00
    assert slept[0] == (datetime(2026, 12, 14, 9, 0, tzinfo=NY) - datetime(2026, 12, 8, 15, 0, tzinfo=NY)) \
        .total_seconds()
    assert slept[1] == timedelta(days=7).total_seconds()
    headers = [p["blocks"][0]["text"]["text"] for p in fake.posts(LEADS)]
    assert headers == ["Weekly digest: Mon 30 Nov \u2013 Sun 06 Dec 2026",
                       "Weekly digest: Mon 07 Dec \u2013 Sun 13 Dec 2026"]
    assert len(fake.ok("files.completeUploadExternal")) == 2


def test_the_schedule() -> None:
    assert digest.Schedule.parse("mon 09:00") == digest.Schedule(0, time(9, 0))
    assert digest.Schedule.parse(" Friday 16:30 ") == digest.Schedule(4, time(16, 30))
    for bad in ("09:00", "someday 09:00", "mon 25:00", "mon 9"):
        with pytest.raises(ValueError, match="BATON_DIGEST_AT"):
            digest.Schedule.parse(bad)
    # Across the change to summer time (8 March 2026 in New York) the moment stays 09:00 local.
    schedule = digest.Schedule(0, time(9, 0))
    before = datetime(2026, 3, 3, 12, 0, tzinfo=NY).astimezone(UTC)
    assert schedule.next_slot(before, NY) == datetime(2026, 3, 9, 9, 0, tzinfo=NY)
    assert schedule.next_slot(before, NY).astimezone(UTC).hour == 13
    # The week that holds the change is 167 hours long, midnight to midnight, and the one before it 168.
    since, until = digest.period(datetime(2026, 3, 9, 9, 0, tzinfo=NY), NY)
    assert (since, until) == (datetime(2026, 3, 2, tzinfo=NY), datetime(2026, 3, 9, tzinfo=NY))
    assert until - since == timedelta(hours=167)
    assert digest.period(since, NY) == (datetime(2026, 2, 23, tzinfo=NY), since)


def test_no_leads_channel_no_digest_said_once(policy: Policy) -> None:
    settings = Settings(_env_file=None, BATON_LEADS_CHANNEL=None)  # type: ignore[call-arg]
    client = AsyncWebClient(token=TOKEN)
    with structlog.testing.capture_logs() as logged:
        assert digest.timer(settings, None, policy, client) is None  # type: ignore[arg-type]
    assert [e["event"] for e in logged] == ["digest_off"]
    configured = Settings(_env_file=None, BATON_LEADS_CHANNEL=LEADS, BATON_DIGEST_AT="tue 08:30")  # type: ignore[call-arg]
    job = digest.timer(configured, None, policy, client)  # type: ignore[arg-type]
    assert job is not None
    job.close()
    with pytest.raises(ValueError, match="BATON_DIGEST_AT"):
        digest.timer(Settings(_env_file=None, BATON_DIGEST_AT="soon"), None, policy, client)  # type: ignore[call-arg, arg-type]


# ---- python -m bot digest --dry-run ----


def test_the_dry_run_prints_the_blocks_as_json(tmp_path: Path, policy: Policy) -> None:
    """The command, as a person runs it (its own process: it configures logging for itself)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'baton.db'}"

    async def seed() -> None:
        store = Store(url)
        await store.migrate()
        try:
            await script(store)
        finally:
            await store.close()

    asyncio.run(seed())
    png = tmp_path / "chart.png"
    env = {k: v for k, v in os.environ.items() if k not in ("SLACK_BOT_TOKEN", "BATON_LEADS_CHANNEL")}
    env["BATON_DATABASE_URL"] = url

    def digest_command(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bot", "digest", *args], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=120, check=False)

    done = digest_command("--dry-run", "--now", NOW.isoformat(), "--png", str(png))
    assert done.returncode == 0, done.stderr
    printed: dict[str, Any] = json.loads(done.stdout)
    assert printed["week"] == "2026-W50" and printed["blocks"][0]["type"] == "header"
    fields = [f["text"] for b in printed["blocks"] for f in b.get("fields", [])]
    assert fields[0] == "*Conversations*\n4  \u2191 2  _(was 2)_"
    assert "&lt;!channel&gt;" in json.dumps(printed["blocks"])
    assert png.read_bytes().startswith(b"\x89PNG")

    done = digest_command()
    assert done.returncode == 2 and "BATON_LEADS_CHANNEL" in done.stderr  # posting needs a token and a channel
