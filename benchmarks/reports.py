"""Benchmark: ``python -m bot report`` over 100,000 conversations on PostgreSQL, beside a floor.

A throwaway PostgreSQL cluster (Debian's package, as the tests start it) gets ``--conversations`` conversations
spread over 30 days, shaped like a busy team's: most answered by the bot, about a third handed to people (most
of them answered, half resolved, some with CSAT, a few reopened), drafts on some, review tags on a few, each
with its customer message, the bot's decision, its transitions and its bot and staff messages (about 7 rows per
conversation in all). Then, each measured ``--runs`` times (the best is printed):

- the floor: reading the period's conversation rows alone (one ``SELECT`` of the columns the report reads),
  what any report must at least do;
- the report: ``bot.reports.build`` (every query and every row), then ``to_json()`` and ``to_csv()``, as the
  command does.

Numbers, not a test (the bar, 5 s for the whole report, is printed beside them):

    python benchmarks/reports.py [--conversations 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from pg import PostgresUnavailable, fresh_database, start_cluster  # noqa: E402

from bot import reports  # noqa: E402
from bot.policy import load_policy  # noqa: E402
from bot.store import Store, conversations, decisions, drafts, messages, reviews, transitions  # noqa: E402

BAR_SECONDS = 5.0
START = datetime(2026, 10, 1, tzinfo=UTC)
DAYS = 30
INTENTS = ["how_to", "how_to", "how_to", "meeting_issue", "account_access", "billing", "cancellation", "other"]
SEVERITIES = ["low", "medium", "high", "critical"]
ROUTES = ["support", "billing", "engineering", "success"]
TAGS = ["correct", "correct", "correct", "wrong article", "should have escalated", "unnecessary escalation"]


def history(count: int, seed: int = 16) -> dict[str, list[dict[str, Any]]]:
    """The rows of ``count`` conversations, table by table."""
    rng = random.Random(seed)
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in
                                             ("conversations", "messages", "decisions", "transitions", "drafts",
                                              "reviews")}
    message_id = 0
    for n in range(count):
        cid = f"c{n:07d}"
        started = START + timedelta(seconds=rng.randrange(DAYS * 86_400))
        intent = rng.choice(INTENTS)
        escalated = rng.random() < 0.35
        severity = rng.choice(SEVERITIES) if escalated else "low"
        route = rng.choice(ROUTES) if escalated else None
        staff_at = started + timedelta(minutes=rng.expovariate(1 / 90)) if escalated and rng.random() < 0.8 else None
        resolved_at = (staff_at + timedelta(minutes=rng.randrange(5, 600))) if staff_at and rng.random() < 0.6 \
            else None
        state = "resolved" if resolved_at else ("claimed" if staff_at else ("escalated" if escalated else "open"))
        rows["conversations"].append(dict(
            id=cid, platform=rng.choice(("slack", "slack", "discord")), workspace="T0HOME", channel="C0SHARED",
            thread=cid, customer_id=f"U{rng.randrange(count // 3):06d}", organisation=f"org{rng.randrange(200)}",
            state=state, intent=intent, severity=severity, route=route, details={},
            csat=rng.randint(1, 5) if resolved_at and rng.random() < 0.3 else None, started_at=started,
            updated_at=started, card_channel="C0INTERNAL" if escalated else None,
            card_ts=f"{1_700_000_000 + n}.000100" if escalated else None))
        message_id += 1
        rows["messages"].append(dict(id=message_id, conversation_id=cid, role="customer", author_id="U1",
                                     text=f"question {rng.randrange(5000)} about {intent}", at=started))
        rules = (["knowledge.no_answer"] if intent == "other" else [f"{intent}.signal"]) + \
            ([f"route.{route}"] if route else [])
        rows["decisions"].append(dict(conversation_id=cid, message_id=message_id, intent=intent, escalate=escalated,
                                      severity=severity, route=route, rules=rules, inputs={}, output={},
                                      policy_version="bench", at=started))
        rows["transitions"].append(dict(conversation_id=cid, from_state=None, to_state="open", cause="first",
                                        actor="bot", at=started))
        if not escalated:
            message_id += 1
            rows["messages"].append(dict(id=message_id, conversation_id=cid, role="bot", author_id="bot",
                                         text="Here is how.", at=started + timedelta(seconds=2)))
            continue
        rows["transitions"].append(dict(conversation_id=cid, from_state="open", to_state="escalated",
                                        cause="escalated", actor="bot", at=started))
        if staff_at:
            message_id += 1
            rows["messages"].append(dict(id=message_id, conversation_id=cid, role="staff", author_id="U0AGENT",
                                         text="On it.", at=staff_at))
        if resolved_at:
            rows["transitions"].append(dict(conversation_id=cid, from_state="claimed", to_state="resolved",
                                            cause="resolved", actor="U0AGENT", at=resolved_at))
            if rng.random() < 0.05:
                rows["transitions"].append(dict(conversation_id=cid, from_state="resolved", to_state="open",
                                                cause="customer wrote again", actor="U1",
                                                at=resolved_at + timedelta(days=rng.randrange(1, 10))))
        if intent == "how_to" and rng.random() < 0.3:
            status = rng.choice(("approved", "approved", "edited", "rejected"))
            rows["drafts"].append(dict(conversation_id=cid, intent=intent, mode="draft", route=route, text="Draft.",
                                       citations=[], status=status, created_at=started, decided_by="U0AGENT",
                                       decided_at=staff_at or started,
                                       edit_ratio=rng.random() / 2 if status == "edited" else 0.0))
        if rng.random() < 0.05:
            rows["reviews"].append(dict(conversation_id=cid, reason="handoff", intent=intent, text="...",
                                        article="Exporting" if rng.random() < 0.5 else None, created_at=started,
                                        tag=rng.choice(TAGS), tagged_by="U0LEAD", tagged_at=started))
    return rows


async def load(store: Store, rows: dict[str, list[dict[str, Any]]]) -> None:
    tables = {"conversations": conversations, "messages": messages, "decisions": decisions,
              "transitions": transitions, "drafts": drafts, "reviews": reviews}
    for name, table in tables.items():
        items = rows[name]
        for start in range(0, len(items), 5_000):
            async with store.transaction() as conn:
                await conn.execute(table.insert(), items[start:start + 5_000])
    async with store.transaction() as conn:
        await conn.execute(sa.text("ANALYZE"))


async def best(runs: int, work: Any) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = await work()
        times.append(time.perf_counter() - start)
    return min(times), result


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    try:
        cluster = start_cluster()
    except PostgresUnavailable as exc:
        print(f"reports benchmark skipped: {exc}")
        return 0
    try:
        store = Store(await fresh_database(cluster.url))
        await store.migrate()
        policy = load_policy()
        rows = history(args.conversations)
        started = time.perf_counter()
        await load(store, rows)
        stored = {k: len(v) for k, v in rows.items()}
        print(f"stored {sum(stored.values()):,} rows ({', '.join(f'{k} {v:,}' for k, v in stored.items())}) "
              f"in {time.perf_counter() - started:.1f} s")
        since, until = START, START + timedelta(days=DAYS)

        async def floor() -> int:
            c = conversations.c
            async with store.transaction() as conn:
                return len((await conn.execute(sa.select(
                    c.id, c.platform, c.workspace, c.customer_id, c.organisation, c.state, c.intent, c.severity,
                    c.route, c.csat, c.started_at, c.card_channel, c.card_ts).where(
                    (c.started_at >= since) & (c.started_at < until)))).all())

        async def report() -> tuple[reports.Report, float, float]:
            built = await reports.build(store, policy, since, until)
            mark = time.perf_counter()
            data = built.to_json()
            as_json = time.perf_counter() - mark
            mark = time.perf_counter()
            reports.to_csv(built)
            as_csv = time.perf_counter() - mark
            assert data["kpis"]["conversations"] == args.conversations
            return built, as_json, as_csv

        floor_s, count = await best(args.runs, floor)
        total_s, (built, json_s, csv_s) = await best(args.runs, report)
        kpis = built.to_json()["kpis"]
        print(f"floor: the period's {count:,} conversation rows read in {floor_s:.2f} s")
        print(f"report: {args.conversations:,} conversations in {total_s:.2f} s (of which to_json {json_s:.2f} s, "
              f"to_csv {csv_s:.2f} s), {total_s / floor_s:.1f}x the floor; bar {BAR_SECONDS:.0f} s: "
              f"{'met' if total_s < BAR_SECONDS else 'NOT MET'}")
        print(f"  bot resolution {kpis['bot_resolution_rate']}, FCR {kpis['first_contact_resolution']}, "
              f"time to human p50 {kpis['time_to_human_p50_minutes']} min, SLA breaches {kpis['sla_breaches']:,}")
        await store.close()
    finally:
        cluster.remove()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
