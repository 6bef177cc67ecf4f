"""Benchmark: Discord customers answered through the real discord.py client, live and after a restart.

One process holds a local fake of Discord's gateway and REST API (tests/discord_fake.py), a fake of
Slack's Web API for the staff side, and Baton (the Discord adapter, the Slack adapter's courier, a
SQLite store). The fakes share the process and its core with Baton, so the numbers are a floor.

1. live: ``--customers`` people each ask a how-to question in the support channel at once; measured
   until every one has its answer in a thread of its own (messages/s, and p50/p99 from the message on
   the gateway to the answer reaching Discord's API);
2. restart: Baton stops; meanwhile each customer writes ``--follow-ups`` more messages in their
   thread and ``--customers`` new people ask in the channel; a new Baton on the same database starts
   and catches up. Measured: the time from start to the end of the catch-up, the messages fetched and
   handled, and that every missed message was handled exactly once;
3. a reconnect after that fetches and answers nothing more;
4. ``--single`` questions asked one at a time: the latency of one answer with nothing else going on.

    python benchmarks/discord_gateway.py [--customers 200] [--follow-ups 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from discord_fake import DANA, FORUM, STAFF_ROLE, SUPPORT, TOKEN, FakeDiscord  # noqa: E402
from slack_fake import FakeSlack, Harness  # noqa: E402

from adapters.discord_gateway import DiscordAdapter, DiscordConfig  # noqa: E402
from bot import logs  # noqa: E402
from bot.engine import Engine  # noqa: E402
from bot.knowledge import KnowledgeBase  # noqa: E402
from bot.policy import load_policy  # noqa: E402
from bot.service import Service  # noqa: E402
from bot.store import Store  # noqa: E402

QUESTIONS = ["How do I connect my Outlook calendar?", "How do I export notes to HubSpot?",
             "Can I change the language of the summary?", "How do I share a recording with my team?"]


async def start(service: Service, fake: FakeDiscord, slack: tuple[FakeSlack, str]) -> tuple[DiscordAdapter, Harness]:
    assert fake.server is not None
    config = DiscordConfig(
        token=TOKEN, channels=frozenset({SUPPORT, FORUM}), staff_roles=frozenset({STAFF_ROLE}),
        api_url=str(fake.server.make_url("/api/v10")), gateway_url=fake.gateway_url)
    harness = Harness(service, slack[0], slack[1],
                      platforms={"discord": lambda app: DiscordAdapter(app, config, guild_ready_timeout=0.05)})
    discord = harness.application.platforms["discord"]
    assert isinstance(discord, DiscordAdapter)
    await harness.start()
    return discord, harness


async def stop(discord: DiscordAdapter, harness: Harness) -> None:
    await harness.close()  # the application stops every platform, Discord's included


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


async def main(args: argparse.Namespace) -> None:
    logs.configure("error")
    folder = Path(tempfile.mkdtemp(prefix="baton-discord-bench-"))
    store = Store(f"sqlite+aiosqlite:///{folder / 'baton.db'}")
    await store.migrate()
    policy = load_policy()
    service = Service(Engine(policy, KnowledgeBase.load(None, policy.knowledge)), store)
    fake = FakeDiscord()
    await fake.start()
    slack_fake = FakeSlack()
    slack = (slack_fake, await slack_fake.start())
    n = args.customers

    discord, harness = await start(service, fake, slack)
    await asyncio.wait_for(discord.client.wait_until_ready(), 30)
    await discord.tracker.wait("catch-up:1", timeout=30)
    asked: dict[int, float] = {}
    began = time.perf_counter()
    for i in range(n):
        payload = await fake.say(DANA, QUESTIONS[i % len(QUESTIONS)])
        asked[int(payload["id"])] = time.perf_counter()
    await fake.wait_for(lambda f: len({s.channel for s in f.sent}) >= n, timeout=600)
    took = time.perf_counter() - began
    latencies = [1000 * (s.at - asked[s.channel]) for s in fake.sent if s.channel in asked]
    print(f"live: {n} questions from {n} customers answered, each in its own thread, in {took:.2f} s: "
          f"{n / took:.0f} messages/s; message on the gateway -> answer posted: "
          f"p50 {percentile(latencies, 50):.0f} ms, p99 {percentile(latencies, 99):.0f} ms")

    one_at_a_time = []
    for i in range(args.single):
        payload = await fake.say(DANA, QUESTIONS[i % len(QUESTIONS)])
        sent_at = time.perf_counter()
        await fake.wait_for(lambda f, t=int(payload["id"]): bool(f.posts(t)), timeout=60)
        one_at_a_time.append(1000 * (fake.posts(int(payload["id"]))[0].at - sent_at))
    print(f"one at a time: {args.single} questions, message on the gateway -> answer posted: "
          f"p50 {percentile(one_at_a_time, 50):.0f} ms, max {max(one_at_a_time):.0f} ms")

    await stop(discord, harness)
    threads = list(asked)
    missed = 0
    for round_ in range(args.follow_ups):
        for thread in threads:
            await fake.say(DANA, f"{QUESTIONS[(round_ + 1) % len(QUESTIONS)]} ({round_})", channel=thread, live=False)
            missed += 1
    for i in range(n):
        await fake.say(DANA, QUESTIONS[i % len(QUESTIONS)], live=False)
        missed += 1
    handled_before = len(await _customer_lines(store))
    began = time.perf_counter()
    discord, harness = await start(service, fake, slack)
    await discord.tracker.wait("catch-up:1", timeout=600)
    took = time.perf_counter() - began
    handled = len(await _customer_lines(store)) - handled_before
    print(f"restart: {missed} messages written while Baton was down ({args.follow_ups} in each of {n} threads, "
          f"{n} new questions); start to caught up {took:.2f} s: {handled} handled "
          f"({handled / took:.0f} messages/s), {missed - handled} missing")

    sent_before = len(fake.sent)
    await harness.settle()
    sent_after_settle = len(fake.sent)
    await fake.reconnect()
    await discord.tracker.wait("catch-up:2", timeout=600)
    await harness.settle()
    again = len(await _customer_lines(store)) - handled_before - handled
    print(f"reconnect: {again} messages handled again, {len(fake.sent) - sent_after_settle} more posts "
          f"({sent_after_settle - sent_before} answers delivered after the catch-up)")
    await stop(discord, harness)
    await fake.close()
    await slack_fake.close()
    await store.close()


async def _customer_lines(store: Store) -> list[Any]:
    import sqlalchemy as sa

    from bot.store import messages

    async with store.engine.begin() as conn:
        return list((await conn.execute(sa.select(messages.c.event_id).where(messages.c.role == "customer"))).all())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--follow-ups", type=int, default=2)
    parser.add_argument("--single", type=int, default=20, help="questions asked one at a time, for latency")
    asyncio.run(main(parser.parse_args()))
