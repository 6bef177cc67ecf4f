"""``GET /metrics``: the real application over real HTTP on 127.0.0.1, scraped with aiohttp and read with
prometheus-client's own parser.

The counters must move by exactly what a test drove (events received, stored, handled; decisions by tier
and route; deliveries and their failures by kind; model calls, tokens and fallbacks), the backlog gauges
must read the database, each application must count apart from the others, and the endpoint must be off
(404) unless turned on, and refuse a scrape without the token (401) when one is configured.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import openai
import pytest
import sqlalchemy as sa
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from openai_fake import FakeOpenAI
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from slack_fake import FakeSlack, Harness

from bot.app import Application
from bot.engine import Engine
from bot.llm import LanguageModel
from bot.model import Person, Reply, Role
from bot.service import Service
from bot.settings import Settings
from bot.store import Store, outbox
from bot.testing import MemoryPlatform, TestBot
from bot.web.metrics import NO_METRICS, Prometheus

DANA = Person(id="U0DANA", name="Dana Smith", organisation="T0CUSTOMER")
LEE = Person(id="U0LEE", name="Lee Park", organisation="T0OTHER")
SAM = Person(id="U0SAM", name="Sam Roe", organisation="T0THIRD")
STAFF = Person(id="U0AGENT", name="Alex Agent", role=Role.staff)
HOW_TO = "How do I connect my Outlook calendar?"
DISPUTE = "This is ridiculous. You charged us twice for November and I want a refund NOW."
HUMAN = "I want to talk to a person please."
TOKEN = "s3cret-metrics-token"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metrics_on(**extra: Any) -> Settings:
    return Settings.model_construct(metrics=True, **extra)


@pytest.fixture
async def http() -> AsyncIterator[ClientSession]:
    async with ClientSession() as session:
        yield session


async def serve(app: Application) -> TestServer:
    """The application's own aiohttp app (``Application.web_app``) on a free port of 127.0.0.1."""
    server = TestServer(app.web_app(), host="127.0.0.1")
    await server.start_server()
    return server


async def scrape(http: ClientSession, server: TestServer, token: str | None = None) -> tuple[Samples, str]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with http.get(server.make_url("/metrics"), headers=headers) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, text


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def by_label(samples: Samples, name: str, *keys: str) -> Counter[tuple[str, ...]]:
    """A counter's non-zero series, by the values of ``keys``."""
    found: Counter[tuple[str, ...]] = Counter()
    for (sample, labels), number in samples.items():
        if sample == name and number:
            found[tuple(dict(labels)[k] for k in keys)] += int(number)
    return found


@pytest.fixture
async def baton(store: Store, bot: Engine) -> AsyncIterator[TestBot]:
    async with TestBot.create(bot, store, settings=metrics_on()) as running:
        yield running


# ---- what was driven, counted exactly ----


async def test_the_counters_move_by_exactly_what_was_driven(baton: TestBot, store: Store, http: ClientSession):
    platform = baton.platform
    server = await serve(baton.app)
    try:
        before, _ = await scrape(http, server)
        assert value(before, "baton_events_received_total", platform="slack") == 0  # known series start at 0
        assert value(before, "baton_inbox_pending") == 0 and value(before, "baton_store_up") == 1

        now = datetime.now(UTC)
        first = platform.message(HOW_TO, author=DANA, thread="1700000000.000001", at=now)
        outcomes = [await platform.receive(first)]
        assert (await platform.receive(first)).duplicate  # Slack's retry of the same event
        outcomes.append(await platform.receive(platform.message(DISPUTE, author=LEE, thread="1700000000.000002",
                                                                at=now)))
        outcomes.append(await platform.receive(platform.message(HUMAN, author=SAM, thread="1700000000.000003",
                                                                at=now)))
        staff = platform.message("Looking at it now.", author=STAFF, thread="1700000000.000002",
                                 at=now + timedelta(seconds=5))
        outcomes.append(await platform.receive(staff))
        await baton.settle()

        after, text = await scrape(http, server)
    finally:
        await server.close()

    assert value(after, "baton_events_received_total", platform="slack") == 5
    assert value(after, "baton_events_acknowledged_total", platform="slack", result="stored") == 4
    assert value(after, "baton_events_acknowledged_total", platform="slack", result="duplicate") == 1
    assert by_label(after, "baton_events_handled_total", "platform", "outcome") == {
        ("slack", "decided"): 3, ("slack", "recorded"): 1}

    decided = [o.decision for o in outcomes if o.decision is not None]
    assert len(decided) == 3
    assert by_label(after, "baton_decisions_total", "tier", "route") == Counter(
        (str(d.tier), d.route or "none") for d in decided)
    assert decided[0].route is None and decided[1].route is not None  # answered; handed over
    assert by_label(after, "baton_decisions_total", "route")[("none",)] == 1

    # Every turn committed after its row was stored: four observations, none negative.
    assert value(after, "baton_handling_seconds_count", platform="slack") == 4
    assert value(after, "baton_handling_seconds_sum", platform="slack") > 0
    assert value(after, "baton_decide_seconds_count") == 3  # the offline engine decides once per message

    conversations = {o.conversation.id for o in outcomes if o.conversation is not None}
    sent = [row for c in conversations for row in await store.outbox_of(c) if row["status"] == "sent"]
    assert len(sent) > 3 and value(after, "baton_outbox_delivered_total") == len(sent)
    assert sum(by_label(after, "baton_delivery_failures_total", "kind").values()) == 0
    assert value(after, "baton_inbox_pending") == 0 and value(after, "baton_outbox_pending") == 0

    # Bounded labels only: nothing a customer or a staff member wrote, no one's id.
    for words in (HOW_TO, "charged us twice", "Looking at it", DANA.id, "Dana", "T0CUSTOMER"):
        assert words not in text


async def test_delivery_failures_are_counted_by_kind(baton: TestBot, http: ClientSession):
    platform = baton.platform
    now = datetime.now(UTC)
    platform.fail("server_error", kind="reply", times=4)  # every in-process attempt: parked, transient
    await platform.receive(platform.message(HOW_TO, author=DANA, thread="1700000000.000010", at=now))
    platform.fail("rate_limited", kind="reply", retry_after=600.0)  # longer than the courier waits: parked
    await platform.receive(platform.message(HOW_TO, author=LEE, thread="1700000000.000011", at=now))
    platform.fail("refused", kind="reply")  # for good
    await platform.receive(platform.message(HOW_TO, author=SAM, thread="1700000000.000012", at=now))
    await baton.settle()
    server = await serve(baton.app)
    try:
        samples, _ = await scrape(http, server)
    finally:
        await server.close()
    assert by_label(samples, "baton_delivery_failures_total", "kind") == {
        ("transient",): 1, ("rate_limited",): 1, ("undeliverable",): 1}
    # Two replies wait for their retry; the refused one is given up on; the card-less answers hold nothing else.
    assert value(samples, "baton_outbox_parked") == 2
    assert value(samples, "baton_outbox_pending") == 2
    assert value(samples, "baton_outbox_failed") == 1


async def test_slack_events_are_handled_and_timed(sqlite_store: Store, bot: Engine, fake: tuple[FakeSlack, str],
                                                monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BATON_METRICS", "1")  # the harness reads its settings from the environment
    server, url = fake
    async with Harness(Service(bot, sqlite_store), server, url) as slack:
        ts = await slack.say("U0DANA", HOW_TO)
        await slack.say("U0DANA", "Thanks, and how do I add a teammate to our workspace?", thread_ts=ts)
        await slack.say("U0ALEX", DISPUTE)
        await slack.say("U0NOBODY", HOW_TO)  # a user Slack does not know: stored, then nothing for the bot
        await slack.settle()
        assert slack.http is not None and slack.server is not None
        samples, _ = await scrape(slack.http, slack.server)
    assert by_label(samples, "baton_events_handled_total", "platform", "outcome") == {
        ("slack", "decided"): 3, ("slack", "ignored"): 1}
    assert value(samples, "baton_events_received_total", platform="slack") == 4
    assert by_label(samples, "baton_events_acknowledged_total", "platform", "result") == {("slack", "stored"): 4}
    assert sum(by_label(samples, "baton_decisions_total", "tier").values()) == 3
    assert by_label(samples, "baton_decisions_total", "route")[("billing",)] == 1
    assert value(samples, "baton_handling_seconds_count", platform="slack") == 4  # every turn that committed
    async with sqlite_store.transaction() as conn:
        sent = (await conn.execute(sa.select(sa.func.count()).where(outbox.c.status == "sent"))).scalar_one()
    assert value(samples, "baton_outbox_delivered_total") == sent >= len(server.posts()) > 3


# ---- the backlog, read from the database ----


async def test_the_backlog_gauges_read_the_store(store: Store, bot: Engine, http: ClientSession):
    # Not started: no worker takes the rows, so what the gauges say is what the test wrote.
    app = Application(metrics_on(), bot, store, platforms={"slack": MemoryPlatform.named("slack")}, port=0)
    memory = app.platforms["slack"]
    assert isinstance(memory, MemoryPlatform)
    stored = []
    for n, person in enumerate((DANA, LEE, SAM)):
        inbound_id = await app.service.receive(memory.message(HOW_TO, author=person, thread=f"1700000000.00004{n}"))
        assert inbound_id is not None
        stored.append(inbound_id)
    assert await store.inbound_failed(stored[0], "boom", give_up_after=1)  # given up on: failed, not pending
    conversation, _ = await store.conversation_for(memory.message(HOW_TO, author=DANA, thread="1700000000.1"))
    rows = await store.enqueue(conversation.id, [Reply(text=f"answer {n}") for n in range(4)], source="test")
    await store.mark_failed(rows[0], "HTTP 500", retry_at=datetime.now(UTC) + timedelta(minutes=5))
    await store.mark_failed(rows[1], "channel_not_found", retry_at=None)

    server = await serve(app)
    try:
        samples, _ = await scrape(http, server)
        assert value(samples, "baton_inbox_pending") == 2
        assert value(samples, "baton_inbox_failed") == 1
        assert 0 <= value(samples, "baton_inbox_oldest_pending_seconds") < 600
        assert value(samples, "baton_outbox_pending") == 3  # the parked one included
        assert value(samples, "baton_outbox_parked") == 1
        assert value(samples, "baton_outbox_failed") == 1

        await app.inbox.work(stored[1])  # a worker handles one stored row: the gauge follows the database
        samples, _ = await scrape(http, server)
        assert value(samples, "baton_inbox_pending") == 1
    finally:
        await server.close()


async def test_a_database_that_does_not_answer_leaves_the_gauges_out_not_the_counters(http: ClientSession):
    down = Store("postgresql+asyncpg://baton@127.0.0.1:1/baton")  # nothing listens on port 1: refused at once
    metrics = Prometheus(down, platforms=["slack"])
    metrics.received("slack")
    app = web.Application()
    metrics.routes(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        samples, _ = await scrape(http, server)
    finally:
        await server.close()
        await down.close()
    assert value(samples, "baton_store_up") == 0
    assert not any(name.startswith(("baton_inbox_", "baton_outbox_pending")) for name, _ in samples)
    assert value(samples, "baton_events_received_total", platform="slack") == 1


# ---- one registry per application ----


async def test_each_application_counts_apart(sqlite_store: Store, bot: Engine, http: ClientSession):
    async with TestBot.create(bot, sqlite_store, settings=metrics_on()) as one, \
            TestBot.create(bot, sqlite_store, settings=metrics_on()) as other:
        assert isinstance(one.app.metrics, Prometheus) and isinstance(other.app.metrics, Prometheus)
        assert one.app.metrics.registry is not other.app.metrics.registry
        await one.platform.receive(one.platform.message(HOW_TO, author=DANA, thread="1700000000.000020"))
        servers = [await serve(one.app), await serve(other.app)]
        try:
            counted = [value((await scrape(http, s))[0], "baton_events_received_total", platform="slack")
                       for s in servers]
        finally:
            for server in servers:
                await server.close()
    assert counted == [1, 0]


# ---- off by default; protected by a token ----


async def test_metrics_are_off_by_default(sqlite_store: Store, bot: Engine, http: ClientSession):
    async with TestBot.create(bot, sqlite_store, settings=Settings.model_construct()) as baton:
        assert baton.app.metrics is NO_METRICS and baton.service.metrics is NO_METRICS
        server = await serve(baton.app)
        try:
            async with http.get(server.make_url("/metrics")) as response:
                assert response.status == 404
            async with http.get(server.make_url("/livez")) as response:
                assert response.status == 200
        finally:
            await server.close()


def test_the_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch):
    assert Settings(_env_file=None).metrics is False  # type: ignore[call-arg]
    monkeypatch.setenv("BATON_METRICS", "1")
    monkeypatch.setenv("BATON_METRICS_TOKEN", TOKEN)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.metrics is True and settings.metrics_token is not None
    assert settings.metrics_token.get_secret_value() == TOKEN and TOKEN not in repr(settings)


async def test_a_configured_token_is_required(sqlite_store: Store, bot: Engine, http: ClientSession):
    settings = metrics_on(metrics_token=SecretStr(TOKEN))
    async with TestBot.create(bot, sqlite_store, settings=settings) as baton:
        server = await serve(baton.app)
        try:
            url = server.make_url("/metrics")
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                            {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": "Bearer"}):
                async with http.get(url, headers=headers) as response:
                    assert response.status == 401, headers
                    assert response.headers["WWW-Authenticate"].startswith("Bearer")
                    assert TOKEN not in await response.text()
            samples, text = await scrape(http, server, token=TOKEN)
            assert value(samples, "baton_store_up") == 1 and TOKEN not in text
        finally:
            await server.close()


# ---- the language model ----


@pytest.fixture
async def openai_fake() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI()
    await server.start()
    yield server
    await server.close()


async def test_model_calls_tokens_and_fallbacks(sqlite_store: Store, bot: Engine, openai_fake: FakeOpenAI,
                                                http: ClientSession):
    assert openai_fake.server is not None
    client = openai.AsyncOpenAI(base_url=str(openai_fake.server.make_url("/v1")), api_key="test-key",
                                max_retries=0)
    llm = LanguageModel(client, "fake-model", sqlite_store, timeout=2.0, attempts=1)
    async with TestBot.create(bot, sqlite_store, llm=llm, settings=metrics_on(), first_reply=5.0) as baton:
        platform = baton.platform
        await platform.receive(platform.message(HOW_TO, author=DANA, thread="1700000000.000030"))
        openai_fake.failures = [500]
        await platform.receive(platform.message(HOW_TO, author=LEE, thread="1700000000.000031"))
        await baton.settle()
        server = await serve(baton.app)
        try:
            samples, _ = await scrape(http, server)
        finally:
            await server.close()
    calls = await sqlite_store.llm_calls_of()
    assert len(calls) == 2 and sum(not c["ok"] for c in calls) == 1
    assert by_label(samples, "baton_model_calls_total", "use", "result") == {("turn", "ok"): 1, ("turn", "error"): 1}
    assert value(samples, "baton_model_tokens_total", type="prompt") == sum(c["prompt_tokens"] for c in calls) > 0
    assert value(samples, "baton_model_tokens_total", type="completion") == sum(
        c["completion_tokens"] for c in calls) > 0
    assert by_label(samples, "baton_model_fallbacks_total", "reason") == {("failed",): 1}
    assert value(samples, "baton_model_call_seconds_count", use="turn") == 2
