"""``python -m bot replay FILE --record``: past conversations stored with their human outcomes, at their own
times, in the configured database (SQLite and PostgreSQL), once; then read by ``report`` and ``autonomy``.

The command runs as a newcomer would run it (a subprocess with ``BATON_DATABASE_URL``); the rows are read
back from the database itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bot import autonomy, history, reports
from bot.cli import ReplayConversation
from bot.policy import Policy
from bot.store import Store, conversations, decisions, drafts, messages, transitions

ROOT = Path(__file__).resolve().parent.parent


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC) if "+" not in text else datetime.fromisoformat(text)


HISTORY = [
    {"id": "h1", "platform": "slack", "organisation": "T-ACME", "customer": "U-ANA", "messages": [
        {"role": "customer", "author": "Ana", "text": "How do I connect my Outlook calendar?",
         "at": "2026-11-16T15:00:00Z"},
        {"role": "agent", "author": "Dana", "text": "Open Settings, then Calendars, and choose Connect Outlook.",
         "at": "2026-11-16T15:12:00Z"}],
     "outcome": {"escalated": False, "resolved_at": "2026-11-16T15:30:00Z", "resolved_by": "Dana", "csat": 5}},
    # times without a zone are in the customer's: 15:00 in Paris is 14:00 UTC
    {"id": "h2", "customer": "U-BOB", "tz": "Europe/Paris", "organisation": "T-BETA", "messages": [
        {"role": "customer", "author": "Bob",
         "text": "You charged us twice this month and nobody answers. I want a refund today.",
         "at": "2026-11-17T15:00:00"},
        {"role": "agent", "author": "Sam", "text": "Sorry about that, I'm looking at your invoices now.",
         "at": "2026-11-17T15:25:00"},
        {"role": "customer", "author": "Bob", "text": "Thanks, please hurry", "at": "2026-11-17T15:40:00"},
        {"role": "agent", "author": "Sam", "text": "The duplicate charge is refunded.", "at": "2026-11-17T16:00:00"}],
     "outcome": {"escalated": True, "route": "billing", "claimed_by": "Sam", "claimed_at": "2026-11-17T15:20:00",
                 "resolved_at": "2026-11-17T16:10:00", "resolved_by": "Sam", "csat": 4}},
    # resolved, reopened two days later by the customer, resolved again
    {"id": "h3", "customer": "U-CAT", "messages": [
        {"role": "customer", "text": "How do I delete a recording?", "at": "2026-11-18T10:00:00Z"},
        {"role": "agent", "author": "Lee", "text": "Open the recording, click the three dots and choose Delete.",
         "at": "2026-11-18T10:05:00Z"},
        {"role": "customer", "text": "The recording I deleted is back in the list", "at": "2026-11-20T09:00:00Z"},
        {"role": "agent", "author": "Lee", "text": "Fixed: it is gone for good now.", "at": "2026-11-20T09:30:00Z"}],
     "outcome": {"escalated": False, "resolved_at": ["2026-11-18T10:10:00Z", "2026-11-20T09:45:00Z"],
                 "resolved_by": "Lee"}},
    # no times at all, no names: now, one minute apart; the reply is "agent"'s
    {"id": "h4", "messages": [
        {"role": "customer", "text": "Is the Zoom integration down? None of our meetings recorded today"},
        {"role": "agent", "text": "We're looking into it right now."}],
     "outcome": {"escalated": True, "route": "engineering"}},
    # Discord, no outcome, nobody answered; the later messages one minute after the one before
    {"id": "h5", "platform": "discord", "customer": "D-42", "messages": [
        {"role": "customer", "author": "dee", "text": "The transcript for \"Board Review\" is cut off",
         "at": "2026-11-19T12:00:00Z"},
        {"role": "customer", "text": "It was last Tuesday at 4pm PST"},
        {"role": "customer", "text": "yes"}]},
]


def write(path: Path) -> Path:
    lines = [json.dumps(c) for c in HISTORY]
    lines.append(json.dumps({"messages": [{"role": "customer", "text": "no id here"}]}))
    lines.append("{not json")
    path.write_text("\n".join(lines) + "\n")
    return path


async def baton(*args: str, url: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["BATON_DATABASE_URL"] = url
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def rows_of(store: Store, table: sa.Table, *columns: str) -> dict[str, list[tuple[Any, ...]]]:
    """Per conversation thread, the table's rows (in id order) as tuples of ``columns``, times in UTC."""
    async with store.engine.connect() as conn:
        if table is conversations:
            query = sa.select(conversations.c.thread, *(table.c[c] for c in columns)).order_by(conversations.c.thread)
        else:
            query = (sa.select(conversations.c.thread, *(table.c[c] for c in columns))
                     .join(conversations, conversations.c.id == table.c.conversation_id)
                     .order_by(conversations.c.thread, table.c.id))
        found = (await conn.execute(query)).all()
    out: dict[str, list[tuple[Any, ...]]] = {}
    for thread, *values in found:
        out.setdefault(thread, []).append(tuple(utc(v) if isinstance(v, datetime) else v for v in values))
    return out


async def test_record_stores_each_conversation_as_it_happened_and_only_once(store: Store, tmp_path: Path,
                                                                             policy: Policy) -> None:
    src = write(tmp_path / "history.jsonl")
    before = datetime.now(UTC)
    code, out, err = await baton("replay", str(src), "--record", "--offline", "--json", url=store.url)
    after = datetime.now(UTC)
    assert code == 0, err
    assert "stored=5 conversations, skipped=0 (recorded before), messages=15, not recorded=1" in err
    assert "line 6: not recorded: no id" in err and "line 7: skipped: not valid JSON" in err
    printed = {row["id"]: row for row in map(json.loads, out.splitlines()) if "id" in row}
    assert set(printed) == {"h1", "h2", "h3", "h4", "h5", None}  # stdout as without --record

    h4 = (await rows_of(store, conversations, "started_at"))["h4"][0][0]
    assert before - timedelta(seconds=1) <= h4 <= after  # no times: the conversation starts when it is recorded
    later = h4 + timedelta(minutes=1)

    assert await rows_of(store, conversations, "platform", "workspace", "channel", "customer_id", "customer_name",
                         "organisation", "state", "intent", "severity", "route", "claimed_by", "resolved_by",
                         "csat", "customer_timezone", "started_at", "updated_at", "card_ts", "sla_due") == {
        "h1": [("slack", "history", "history", "U-ANA", "Ana", "T-ACME", "resolved", "how_to", "low", None, "Dana",
                "Dana", 5, None, at("2026-11-16T15:00:00"), at("2026-11-16T15:30:00"), None, None)],
        "h2": [("slack", "history", "history", "U-BOB", "Bob", "T-BETA", "resolved", "billing", "high", "billing",
                "Sam", "Sam", 4, "Europe/Paris", at("2026-11-17T14:00:00"), at("2026-11-17T15:10:00"), None, None)],
        "h3": [("slack", "history", "history", "U-CAT", None, None, "resolved", "how_to", "low", None, "Lee", "Lee",
                None, None, at("2026-11-18T10:00:00"), at("2026-11-20T09:45:00"), None, None)],
        "h4": [("slack", "history", "history", "history:h4", None, None, "claimed", "bug_report", "critical",
                "engineering", "agent", None, None, None, h4, later, None, None)],
        "h5": [("discord", "history", "history", "D-42", "dee", None, "open", "meeting_issue", "low", None, None,
                None, None, None, at("2026-11-19T12:00:00"), at("2026-11-19T12:02:00"), None, None)],
    }
    assert await rows_of(store, messages, "role", "author_id", "author_name", "event_id", "at") == {
        "h1": [("customer", "U-ANA", "Ana", "history:h1:0", at("2026-11-16T15:00:00")),
               ("staff", "Dana", "Dana", "history:h1:1", at("2026-11-16T15:12:00"))],
        "h2": [("customer", "U-BOB", "Bob", "history:h2:0", at("2026-11-17T14:00:00")),
               ("staff", "Sam", "Sam", "history:h2:1", at("2026-11-17T14:25:00")),
               ("customer", "U-BOB", "Bob", "history:h2:2", at("2026-11-17T14:40:00")),
               ("staff", "Sam", "Sam", "history:h2:3", at("2026-11-17T15:00:00"))],
        "h3": [("customer", "U-CAT", None, "history:h3:0", at("2026-11-18T10:00:00")),
               ("staff", "Lee", "Lee", "history:h3:1", at("2026-11-18T10:05:00")),
               ("customer", "U-CAT", None, "history:h3:2", at("2026-11-20T09:00:00")),
               ("staff", "Lee", "Lee", "history:h3:3", at("2026-11-20T09:30:00"))],
        "h4": [("customer", "history:h4", None, "history:h4:0", h4),
               ("staff", "agent", None, "history:h4:1", later)],
        "h5": [("customer", "D-42", "dee", "history:h5:0", at("2026-11-19T12:00:00")),
               ("customer", "D-42", None, "history:h5:1", at("2026-11-19T12:01:00")),
               ("customer", "D-42", None, "history:h5:2", at("2026-11-19T12:02:00"))],
    }
    texts = {m["id"]: [x["text"] for x in m["messages"]] for m in HISTORY}
    async with store.engine.connect() as conn:
        stored_texts = (await conn.execute(sa.select(conversations.c.thread, messages.c.text).join(
            conversations, conversations.c.id == messages.c.conversation_id).order_by(messages.c.id))).all()
    assert {t: [x for th, x in stored_texts if th == t] for t in texts} == texts

    assert await rows_of(store, transitions, "from_state", "to_state", "cause", "actor", "at") == {
        "h1": [(None, "open", "first customer message", "U-ANA", at("2026-11-16T15:00:00")),
               ("open", "escalated", "escalated: history", "history", at("2026-11-16T15:12:00")),
               ("escalated", "claimed", "claimed", "Dana", at("2026-11-16T15:12:00")),
               ("claimed", "resolved", "resolved", "Dana", at("2026-11-16T15:30:00"))],
        "h2": [(None, "open", "first customer message", "U-BOB", at("2026-11-17T14:00:00")),
               ("open", "escalated", "escalated: history (to billing)", "history", at("2026-11-17T14:20:00")),
               ("escalated", "claimed", "claimed", "Sam", at("2026-11-17T14:20:00")),
               ("claimed", "resolved", "resolved", "Sam", at("2026-11-17T15:10:00"))],
        "h3": [(None, "open", "first customer message", "U-CAT", at("2026-11-18T10:00:00")),
               ("open", "escalated", "escalated: history", "history", at("2026-11-18T10:05:00")),
               ("escalated", "claimed", "claimed", "Lee", at("2026-11-18T10:05:00")),
               ("claimed", "resolved", "resolved", "Lee", at("2026-11-18T10:10:00")),
               ("resolved", "open", "customer wrote again", "U-CAT", at("2026-11-20T09:00:00")),
               ("open", "claimed", "claimed", "Lee", at("2026-11-20T09:30:00")),
               ("claimed", "resolved", "resolved", "Lee", at("2026-11-20T09:45:00"))],
        "h4": [(None, "open", "first customer message", "history:h4", h4),
               ("open", "escalated", "escalated: history (to engineering)", "history", later),
               ("escalated", "claimed", "claimed", "agent", later)],
        "h5": [(None, "open", "first customer message", "D-42", at("2026-11-19T12:00:00"))],
    }

    # the bot's decision on every customer message, at that message's time, as the replay printed it
    recorded = await rows_of(store, decisions, "intent", "escalate", "severity", "route", "rules", "output", "at")
    async with store.engine.connect() as conn:
        linked = (await conn.execute(sa.select(decisions.c.inputs, messages.c.event_id, messages.c.text).join(
            messages, messages.c.id == decisions.c.message_id))).all()
    assert all(inputs["event_id"] == event and inputs["text"] == text for inputs, event, text in linked)
    assert len(linked) == 9
    for convo in HISTORY:
        turns = [t for t in printed[convo["id"]]["turns"] if t["role"] == "customer"]
        times = [m[-1] for m in (await rows_of(store, messages, "role", "at"))[convo["id"]] if m[0] == "customer"]
        assert recorded[convo["id"]] == [
            (t["intent"], t["escalate"], t["severity"], t["route"], t["rules"],
             {k: v for k, v in t.items() if k not in ("turn", "role", "held", "state")}, when)
            for t, when in zip(turns, times, strict=True)]
    assert recorded["h2"][0][:4] == ("billing", True, "high", "billing")

    # a shadow draft where the bot would have answered and a person answered instead
    h1_answer = printed["h1"]["turns"][0]["reply"]
    h3_answer = printed["h3"]["turns"][0]["reply"]
    assert h1_answer.endswith("https://help.notewise.example/articles/connect-calendars")
    dana = "Open Settings, then Calendars, and choose Connect Outlook."
    lee = "Open the recording, click the three dots and choose Delete."
    assert await rows_of(store, drafts, "intent", "mode", "text", "citations", "status", "created_at", "decided_by",
                         "decided_at", "final_text", "edit_ratio", "reason") == {
        "h1": [("how_to", "shadow", h1_answer, ["https://help.notewise.example/articles/connect-calendars"],
                "answered", at("2026-11-16T15:00:00"), "Dana", at("2026-11-16T15:12:00"), dana,
                autonomy.edit_ratio(h1_answer, dana), None)],
        "h3": [("how_to", "shadow", h3_answer, ["https://help.notewise.example/articles/delete-recording"],
                "answered", at("2026-11-18T10:00:00"), "Lee", at("2026-11-18T10:05:00"), lee,
                autonomy.edit_ratio(h3_answer, lee), None)],
    }

    # recording the same file again stores nothing twice, and says so
    counts = await _counts(store)
    code, again, err = await baton("replay", str(src), "--record", "--offline", "--json", url=store.url)
    assert code == 0, err
    assert "stored=0 conversations, skipped=5 (recorded before), messages=0, not recorded=1" in err
    assert again == out and await _counts(store) == counts

    # what a lead reads: the KPIs and the agreement, on this history
    report = await reports.build(store, policy, at("2026-11-01T00:00:00"), after + timedelta(days=1), now=after)
    rows = {r.id: r for r in report.rows}
    threads = {cid: thread for thread, [(cid,)] in (await rows_of(store, conversations, "id")).items()}
    by = {threads[k]: r for k, r in rows.items()}
    assert by["h3"].reopened and not by["h1"].reopened and by["h2"].csat == 4
    assert by["h2"].handoff_at == at("2026-11-17T14:20:00")
    assert by["h2"].first_human_reply_at == at("2026-11-17T14:25:00")
    # Sam claimed it at the handoff (15:20 in Paris), then replied: a person had it at once
    assert by["h2"].first_human_at == at("2026-11-17T14:20:00")
    assert by["h2"].time_to_human == timedelta(0) and by["h2"].escalated
    assert not any(r.bot_resolved for r in by.values())  # in history, people answered everything
    # a shadow draft is agreement, not a draft a person decided on
    assert by["h1"].autonomy_mode == "shadow" and by["h1"].drafts == () and by["h1"].draft_edited is None
    code, table, err = await baton("autonomy", "--json", url=store.url)
    assert code == 0, err
    how_to = json.loads(table)["intents"]["how_to"]
    ratios = [autonomy.edit_ratio(h1_answer, dana), autonomy.edit_ratio(h3_answer, lee)]
    assert how_to["sample"] == 2 and how_to["approved_unedited"] == 0.0
    assert how_to["mean_edit_ratio"] == round(sum(ratios) / 2, 4)


async def _counts(store: Store) -> dict[str, int]:
    async with store.engine.connect() as conn:
        return {t.name: (await conn.execute(sa.select(sa.func.count()).select_from(t))).scalar_one()
                for t in (conversations, messages, decisions, transitions, drafts)}


def test_messages_without_times_are_one_minute_after_the_one_before() -> None:
    convo = ReplayConversation.model_validate({"id": "x", "tz": "Europe/Paris", "messages": [
        {"role": "customer", "text": "a"}, {"role": "customer", "text": "b"},
        {"role": "agent", "text": "c", "at": "2026-11-17T12:00:00"}, {"role": "customer", "text": "d"},
        {"role": "customer", "text": "e", "at": "2026-11-17T12:30:00Z"}]})
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert [t.astimezone(UTC) for t in history.moments(convo, now)] == [
        at("2026-11-17T10:58:00"), at("2026-11-17T10:59:00"), at("2026-11-17T11:00:00"), at("2026-11-17T11:01:00"),
        at("2026-11-17T12:30:00")]
    untimed = ReplayConversation.model_validate({"id": "y", "messages": [{"role": "customer", "text": "a"},
                                                                        {"role": "agent", "text": "b"}]})
    assert history.moments(untimed, now) == [now, now + timedelta(minutes=1)]


def test_what_cannot_be_recorded_is_named() -> None:
    def convo(**fields: Any) -> ReplayConversation:
        return ReplayConversation.model_validate({"messages": [{"role": "customer", "text": "hi"}], **fields})

    assert history.problem(convo(id="ok")) is None
    assert "no id" in (history.problem(convo()) or "")
    assert "64" in (history.problem(convo(id="x" * 65)) or "")
    assert "no customer message" in (history.problem(ReplayConversation.model_validate(
        {"id": "z", "messages": [{"role": "agent", "text": "hello"}]})) or "")


async def test_record_refuses_an_unusable_database_before_replaying_anything(tmp_path: Path) -> None:
    src = write(tmp_path / "history.jsonl")
    code, out, err = await baton("replay", str(src), "--record", "--offline",
                                 url=f"sqlite+aiosqlite:///{tmp_path}/missing/folder/baton.db")
    assert code == 2 and out == ""  # nothing replayed
    assert err.startswith("baton: cannot open the database") and "missing/folder does not exist" in err
