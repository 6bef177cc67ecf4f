"""Benchmark: what the language-model layer costs, against a local fake endpoint that answers at once.

Replays the same conversations through the real service twice, on fresh SQLite stores: once on the
offline engine alone, once with the model (the real AsyncOpenAI client against tests/openai_fake.py,
which answers instantly, so what is measured is the layer's own cost, not a model's). Prints:

- model calls and tokens per customer message (triage and answer together; and with the handoff notes);
- the input of a brief for a 30-message thread, in tokens (bar: under 2,000);
- the latency the layer adds to handling one customer message (p50, p90).

    python benchmarks/llm_layer.py [--conversations 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import openai  # noqa: E402
from openai_fake import FakeOpenAI  # noqa: E402

from bot import logs  # noqa: E402
from bot.engine import Engine  # noqa: E402
from bot.knowledge import KnowledgeBase  # noqa: E402
from bot.llm import LanguageModel  # noqa: E402
from bot.model import Message, Person, Role  # noqa: E402
from bot.policy import load_policy  # noqa: E402
from bot.service import Service  # noqa: E402
from bot.store import Store  # noqa: E402

CONVERSATIONS = [
    ["How do I connect my Outlook calendar?", "And Google Calendar too?", "Thanks, that worked"],
    ["How do I export notes to HubSpot?", "Can I review them before they go out?"],
    ["The recording of our Weekly Sync is missing", "It was yesterday at 3pm", "Pacific time", "yes"],
    ["You charged us twice for November and I want a refund.", "Any news? This is the third time I ask."],
    ["Great, so I get to explain it again. How do I share a recording?", "Hello??"],
    ["How do I change the summary language?", "Can it do Spanish?", "ok thanks"],
]


def conversations(count: int) -> list[list[str]]:
    return [CONVERSATIONS[i % len(CONVERSATIONS)] for i in range(count)]


async def replay(service: Service, threads: list[list[str]], tag: str) -> list[float]:
    """Each customer message handled in turn; returns the handling time of each, in ms."""
    took = []
    start = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
    for n, texts in enumerate(threads):
        thread = None
        for i, text in enumerate(texts):
            message = Message(platform="slack", workspace="T0HOME", channel="C0SHARED", thread=thread,
                              author=Person(id=f"U0{tag}{n:04d}", name=f"Customer {n}", role=Role.customer),
                              text=text, at=start + timedelta(minutes=n * 10 + i), event_id=f"{tag}{n}-{i}")
            began = time.perf_counter()
            outcome = await service.handle(message)
            took.append((time.perf_counter() - began) * 1000)
            assert outcome.conversation is not None
            thread = outcome.conversation.thread
    return took


async def fresh_store(folder: Path, name: str) -> Store:
    store = Store(f"sqlite+aiosqlite:///{folder / name}")
    await store.migrate()
    return store


async def main(args: argparse.Namespace) -> None:
    logs.configure("error")
    folder = Path(tempfile.mkdtemp(prefix="baton-llm-bench-"))
    policy = load_policy()
    engine = Engine(policy, KnowledgeBase.load(None, policy.knowledge))
    fake = FakeOpenAI()
    url = await fake.start()
    threads = conversations(args.conversations)
    messages = sum(len(t) for t in threads)

    offline_store = await fresh_store(folder, "offline.db")
    await replay(Service(engine, offline_store), threads[:6], "W")  # warm-up: imports, caches, the first queries
    offline = await replay(Service(engine, offline_store), threads, "R")
    await offline_store.close()

    store = await fresh_store(folder, "model.db")
    client = openai.AsyncOpenAI(base_url=url, api_key="test-key", max_retries=0)
    llm = LanguageModel(client, "fake-model", store)
    await replay(Service(engine, store, llm=llm), threads[:6], "W")
    fake.requests.clear()
    before = await store.llm_calls_of()
    assisted = await replay(Service(engine, store, llm=llm), threads, "R")
    rows = (await store.llm_calls_of())[len(before):]
    turn = [r for r in rows if r["use"] == "turn"]
    tokens_turn = sum(r["prompt_tokens"] + r["completion_tokens"] for r in turn)
    tokens_all = sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows)
    print(f"replayed {len(threads)} conversations, {messages} customer messages")
    print(f"model calls per customer message: triage and answer {len(turn) / messages:.2f} "
          f"(bar: at most 1), with handoff notes {len(rows) / messages:.2f}")
    print(f"tokens per customer message (endpoint's count): triage and answer {tokens_turn / messages:.0f}, "
          f"all uses {tokens_all / messages:.0f}")

    # A 30-message thread that ends in a handoff: what the brief's call sends. The first 29 messages
    # are answered by the offline engine (so that the fake's naive answers cannot end it early).
    long_store = await fresh_store(folder, "long.db")
    questions = ["How do I connect my Outlook calendar so that every meeting on it is recorded, the recurring "
                 "ones included?", "How do I export the notes of our sales calls to HubSpot, with the action "
                 "items?", "How do I change the language of the meeting summary to Spanish for my team?",
                 "How do I share a recording with people outside my company who have no account?"]
    texts = [questions[i % len(questions)] for i in range(29)]
    await replay(Service(engine, long_store), [texts], "L")
    long = Service(engine, long_store, llm=LanguageModel(client, "fake-model", long_store, budget=0))
    fake.requests.clear()
    conversation = await long_store.find_conversation("slack", "T0HOME", "C0SHARED", "L0-0")
    assert conversation is not None
    await long.handle(Message(platform="slack", workspace="T0HOME", channel="C0SHARED", thread=conversation.thread,
                              author=conversation.customer, text="This is unacceptable, we lost the board "
                              "meeting recording. I want a refund.", at=datetime.now(UTC), event_id="L-last"))
    notes = fake.of("HandoffNote")
    if notes:
        sent = notes[-1]["messages"][-1]["content"]
        data = json.loads(sent.split("<data>", 1)[1].rsplit("</data>", 1)[0])
        if args.show:
            print(json.dumps(data, indent=1)[:3000])
        total = len(await long_store.transcript(conversation.id))
        counted = (await long_store.llm_calls_of(conversation.id, use="handoff"))[-1]["prompt_tokens"]
        print(f"brief for a 30-message thread: input {len(sent) // 4} tokens of data, {counted} "
              f"with the prompt ({len(data['conversation'])} transcript lines kept of {total}) (bar: under 2,000)")
    else:
        print("brief for a 30-message thread: no handoff note was requested")
    await long_store.close()

    added = [a - o for a, o in zip(assisted, offline, strict=True)]
    print(f"handling one customer message: offline p50 {statistics.median(offline):.1f} ms, "
          f"with the model p50 {statistics.median(assisted):.1f} ms; added by the layer: "
          f"p50 {statistics.median(added):.1f} ms, p90 {statistics.quantiles(added, n=10)[-1]:.1f} ms "
          "(the fake answers at once: a real model's own time comes on top)")
    await store.close()
    await fake.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=40)
    parser.add_argument("--show", action="store_true", help="print what the 30-message brief sends")
    asyncio.run(main(parser.parse_args()))
