"""Benchmark: the runtime end to end, Baton beside a floor, on SQLite and on PostgreSQL.

For each database, two servers are measured in turn, each in its own process pinned to one core (when
there are two or more; the load, the fake Slack Web API and PostgreSQL share the other core):

- the floor: a bare aiohttp handler that checks the Slack signature, does one INSERT (one transaction)
  into a table on the same kind of database through SQLAlchemy's async engine (the driver and pool Baton
  uses), acknowledges, then posts one ``chat.postMessage`` to the fake through a persistent aiohttp session;
- Baton, built as ``python -m bot run`` builds it (settings from the environment, the shipped policy and
  help center, ``bot.app.Application`` with the Slack platform), plus two routes of the benchmark's own
  that reset and read its counters: CPU time of the process, SQL statements and transactions (SQLAlchemy
  engine events), and, on a separate run, where its event loop's CPU goes (a sampled profile).

The load is ``--messages`` distinct how-to questions (templates x topics x audiences x sign-offs, in a
shuffled order, so that no cache sees the same text twice), each the first message of its own thread,
from 200 customers of one Slack Connect organisation, signed, ``--concurrency`` requests in flight,
after a warm-up of ``--warmup`` others. End to end is from the first event sent until the last answer
reached the fake. Numbers, not a test:

    python benchmarks/runtime.py [--messages 1000] [--concurrency 64] [--database sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web
from slack_sdk.signature import SignatureVerifier

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from pg import free_port  # noqa: E402
from slack_ack import signed  # noqa: E402  (the same signed envelope as the acknowledgement benchmark)
from slack_fake import CUSTOMER_TEAM, INTERNAL, SECRET, SHARED, TOKEN, FakeSlack, message_event  # noqa: E402

BAR_RATE = 250.0
"""Messages/s end to end per process on PostgreSQL, at least."""
BAR_CPU_MS = 3.0
"""CPU ms per handled how-to message, at most."""
BAR_ACK_P99_MS = 100.0
"""Acknowledgement p99 at 64 in flight, below."""

TEMPLATES = ["How do I {t}?", "Quick question: how can I {t}?", "Hi! Could you tell me how to {t}?",
             "What's the way to {t} in Notewise?", "Is there a way to {t}?", "Where do I go to {t}?",
             "hey, how would I {t}", "Can someone explain how to {t}?"]
TOPICS = ["connect my Outlook calendar", "connect my Google calendar", "export notes to HubSpot",
          "export meeting notes to Salesforce", "invite a teammate", "change the language of the summary",
          "share a recording with someone outside my company", "share a recording with my team",
          "get summaries in Spanish", "stop the notetaker auto-joining internal meetings",
          "exclude a meeting from auto-join", "delete a recording", "update our payment method",
          "use Notewise with Microsoft Teams", "use Notewise with Zoom", "use Notewise with Google Meet",
          "get the mobile app", "get access to the API", "see how long recordings are kept",
          "find out when the transcript will be ready"]
AUDIENCES = ["", " for the sales team", " for our Berlin office", " for my manager", " for the support team",
             " for our new hires"]
SIGN_OFFS = ["", " Thanks!", " Cheers", " Thank you in advance."]
CUSTOMERS = 200


def questions(seed: int = 13) -> list[str]:
    """Every distinct how-to question (3,840), in a fixed shuffled order."""
    texts = [template.format(t=topic + audience) + sign_off
             for template, topic, audience, sign_off in itertools.product(TEMPLATES, TOPICS, AUDIENCES, SIGN_OFFS)]
    random.Random(seed).shuffle(texts)
    return texts


# ---- the servers (run as child processes) ----


class Sampler:
    """Where the server's CPU goes: the event loop thread's stack, sampled every ``interval`` seconds of the
    process's CPU time (``ITIMER_PROF``; the handler runs in that thread at its next bytecode).

    cProfile cannot answer this here: SQLAlchemy's asyncio layer runs its synchronous half in greenlets, and a
    greenlet switch leaves cProfile's call stack unbalanced, so its cumulative times are wrong (outer coroutines
    showed several times the process's whole CPU). A sampled stack is stitched across greenlets instead: the
    frames of the running greenlet, then those of each parent. A sample taken while the loop waits for I/O is CPU
    of another thread (the SQLite driver's, onnxruntime's pool)."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.inclusive: Counter[str] = Counter()
        self.own: Counter[str] = Counter()
        self.busy = 0
        self.idle = 0

    def start(self) -> None:
        signal.signal(signal.SIGPROF, self._sample)
        signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)

    def stop(self) -> dict[str, Any]:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, signal.SIG_DFL)
        return {"busy": self.busy, "idle": self.idle, "inclusive": self.inclusive.most_common(400),
                "own": self.own.most_common(400)}

    @staticmethod
    def _key(frame: FrameType) -> str:
        code = frame.f_code
        return f"{code.co_filename}:{code.co_firstlineno}({code.co_name})"

    def _sample(self, _signum: int, frame: FrameType | None) -> None:
        import greenlet  # type: ignore[import-untyped]

        if frame is None:
            return
        if frame.f_code.co_filename.endswith("selectors.py"):  # the loop waits for I/O
            self.idle += 1
            return
        self.busy += 1
        self.own[self._key(frame)] += 1
        stack = set()
        current = greenlet.getcurrent()
        walked: FrameType | None = frame
        while True:
            while walked is not None:
                stack.add(self._key(walked))
                walked = walked.f_back
            current = current.parent
            if current is None:
                break
            walked = current.gr_frame
        self.inclusive.update(stack)


@dataclass
class Meter:
    """What a server did between ``start`` and ``stop``: CPU time, and SQL statements and transactions."""

    statements: int = 0
    begins: int = 0
    commits: int = 0
    rollbacks: int = 0
    texts: Counter[str] = field(default_factory=Counter)
    cpu: float = 0.0
    main_cpu: float = 0.0
    sampler: Sampler | None = None
    profile_path: str | None = None
    engine_cpu: float = 0.0
    """CPU time in ``Engine.decide`` (the decision itself, no I/O), when :meth:`time_engine` was called."""

    def time_engine(self, engine: Any) -> None:
        decide = engine.decide

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return decide(*args, **kwargs)
            finally:
                self.engine_cpu += time.thread_time() - started

        engine.decide = timed

    def watch(self, sync_engine: Any) -> None:
        from sqlalchemy import event

        def statement(_conn: Any, _cursor: Any, text: str, *_args: Any) -> None:
            self.statements += 1
            self.texts[" ".join(text.split())[:110]] += 1

        def begin(_conn: Any) -> None:
            self.begins += 1

        def commit(_conn: Any) -> None:
            self.commits += 1

        def rollback(_conn: Any) -> None:
            self.rollbacks += 1

        event.listen(sync_engine, "before_cursor_execute", statement)
        event.listen(sync_engine, "begin", begin)
        event.listen(sync_engine, "commit", commit)
        event.listen(sync_engine, "rollback", rollback)

    def start(self) -> None:
        self.statements = self.begins = self.commits = self.rollbacks = 0
        self.engine_cpu = 0.0
        self.texts.clear()
        self.cpu, self.main_cpu = time.process_time(), time.thread_time()
        if self.profile_path is not None:
            self.sampler = Sampler()
            self.sampler.start()

    def stop(self) -> dict[str, Any]:
        cpu, main_cpu = time.process_time() - self.cpu, time.thread_time() - self.main_cpu
        if self.sampler is not None and self.profile_path is not None:
            Path(self.profile_path).write_text(json.dumps(self.sampler.stop()))
            self.sampler = None
        return {"cpu_s": cpu, "main_cpu_s": main_cpu, "engine_cpu_s": self.engine_cpu,
                "statements": self.statements, "begins": self.begins,
                "commits": self.commits, "rollbacks": self.rollbacks, "texts": self.texts.most_common(25)}


def bench_routes(web_app: web.Application, meter: Meter, settle: Callable[[], Any]) -> None:
    async def start(_request: web.Request) -> web.Response:
        meter.start()
        return web.json_response({"ok": True})

    async def stop(_request: web.Request) -> web.Response:
        try:
            await asyncio.wait_for(settle(), 120)  # what was decided is also marked delivered
            settled = True
        except TimeoutError:
            settled = False
        return web.json_response({**meter.stop(), "settled": settled})

    web_app.router.add_post("/bench/start", start)
    web_app.router.add_post("/bench/stop", stop)


async def listen(web_app: web.Application, port: int) -> None:
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


async def serve_baton(port: int, api_url: str, database: str, profile: str | None) -> None:
    """Baton as ``python -m bot run`` builds it (bot.cli's own engine and store), without its HTTP server:
    the application's routes are served here beside the benchmark's."""
    os.environ.update({"SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET, "BATON_CUSTOMER_CHANNELS": SHARED,
                       "BATON_INTERNAL_CHANNEL": INTERNAL, "SLACK_API_URL": api_url, "BATON_DATABASE_URL": database})
    from bot import cli, logs
    from bot.app import Application
    from bot.settings import Settings

    settings = Settings()
    logs.configure(settings.log_level)
    engine = cli._engine(argparse.Namespace(policy=None, knowledge=None), settings)
    store = await cli._open_store(settings)
    application = Application(settings, engine, store, llm=None, port=0, workers=settings.workers)
    meter = Meter(profile_path=profile)
    meter.watch(store.engine.sync_engine)
    meter.time_engine(engine)
    await application.start()
    web_app = application.web_app()
    bench_routes(web_app, meter, application.settle)
    await listen(web_app, port)


async def serve_floor(port: int, api_url: str, database: str) -> None:
    """Signature check, one INSERT, acknowledge; then one post to the fake through a persistent session."""
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import create_async_engine

    if database.startswith("sqlite"):  # as bot.store configures SQLite: one connection, WAL
        engine = create_async_engine(database, pool_size=1, max_overflow=0, pool_timeout=60,
                                     connect_args={"timeout": 30})

        def pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        sa.event.listen(engine.sync_engine, "connect", pragmas)
    else:
        engine = create_async_engine(database, pool_size=10, max_overflow=10, pool_timeout=10)
    metadata = sa.MetaData()
    events = sa.Table("events", metadata, sa.Column("event_id", sa.String, primary_key=True),
                      sa.Column("channel", sa.String, nullable=False), sa.Column("ts", sa.String, nullable=False),
                      sa.Column("user_id", sa.String, nullable=False), sa.Column("text", sa.Text, nullable=False),
                      sa.Column("payload", sa.Text, nullable=False))
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    meter = Meter()
    meter.watch(engine.sync_engine)
    insert = events.insert()
    verifier = SignatureVerifier(SECRET)
    http = ClientSession(api_url, headers={"Authorization": f"Bearer {TOKEN}"})
    pending: set[asyncio.Task[None]] = set()

    async def reply(event: dict[str, Any]) -> None:
        async with http.post("chat.postMessage", json={
                "channel": event["channel"], "thread_ts": event["ts"],
                "text": "Here is how, from our help center: https://help.notewise.example/"}) as response:
            await response.read()

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        if not verifier.is_valid_request(body, request.headers):
            return web.Response(status=401)
        payload = json.loads(body)
        event = payload["event"]
        async with engine.begin() as conn:
            await conn.execute(insert, {"event_id": payload["event_id"], "channel": event["channel"],
                                        "ts": event["ts"], "user_id": event["user"], "text": event["text"],
                                        "payload": body.decode()})
        task = asyncio.create_task(reply(event))
        pending.add(task)
        task.add_done_callback(pending.discard)
        return web.Response()

    async def settle() -> None:
        while pending:
            await asyncio.gather(*pending)

    web_app = web.Application()
    web_app.router.add_post("/slack/events", handle)
    bench_routes(web_app, meter, settle)
    await listen(web_app, port)


# ---- the load (this process) ----


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes (those that ended in between are not counted)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def core_times() -> dict[int, tuple[int, int]]:
    """Per core: (busy, total) jiffies since boot, from /proc/stat."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            ticks = [int(v) for v in values]
            idle = ticks[3] + ticks[4]  # idle + iowait
            out[int(name[3:])] = (sum(ticks[:8]) - idle, sum(ticks[:8]))
    return out


def core_busy(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]) -> dict[int, float]:
    return {core: (after[core][0] - busy) / max(1, after[core][1] - total)
            for core, (busy, total) in before.items() if core in after}


def postgres_pids(data: Path) -> list[int]:
    """The postmaster of the cluster in ``data`` and its children (the backends and helpers)."""
    try:
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    pids = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


@dataclass
class Run:
    kind: str
    database: str
    messages: int
    acks: list[float]
    non_200: int
    elapsed: float
    """From the first event sent to the last answer at the fake (or to the deadline)."""
    answered: int
    answer_latencies: list[float]
    stats: dict[str, Any]
    handoffs: int
    db_cpu: float | None
    cores: dict[int, float]
    """How busy each core was from the first event sent to the last answer."""
    server_core: int | None

    @property
    def shares(self) -> tuple[float, float, float]:
        """The server's share of its core, other processes' share of it, and how busy the other cores were."""
        own = float(self.stats["cpu_s"]) / self.elapsed if self.elapsed else 0.0
        if self.server_core is None or self.server_core not in self.cores:
            return own, float("nan"), sum(self.cores.values()) / max(1, len(self.cores))
        others = [busy for core, busy in self.cores.items() if core != self.server_core]
        return own, max(0.0, self.cores[self.server_core] - own), sum(others) / max(1, len(others))

    @property
    def rate(self) -> float:
        return self.answered / self.elapsed if self.elapsed else 0.0

    def ack(self, q: float) -> float:
        return 1000 * quantile(self.acks, q)

    @property
    def cpu_ms(self) -> float:
        return 1000 * float(self.stats["cpu_s"]) / self.messages

    @property
    def engine_ms(self) -> float:
        return 1000 * float(self.stats.get("engine_cpu_s", 0.0)) / self.messages

    def per_message(self, key: str) -> float:
        return float(self.stats[key]) / self.messages


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered))) - 1))]


class Bench:
    def __init__(self, args: argparse.Namespace, fake: FakeSlack, api_url: str, workdir: Path,
                 core: int | None) -> None:
        self.args = args
        self.fake = fake
        self.api_url = api_url
        self.workdir = workdir
        self.core = core
        self.texts = questions()
        self.sent = 0
        """Events sent so far, over every run: each gets its own event id and thread ts."""
        self.base = int(time.time()) - 3600

    async def start(self, kind: str, database: str, label: str, profile: Path | None) -> tuple[Any, int]:
        port = free_port()
        log = open(self.workdir / f"{label}.log", "wb")  # noqa: SIM115 - lives as long as the child
        extra = ["--profile-to", str(profile)] if profile is not None else []
        process = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--serve", kind, "--port", str(port), "--api", self.api_url,
            "--url", database, *extra, stdout=asyncio.subprocess.PIPE, stderr=log, cwd=self.workdir)
        if self.core is not None:
            os.sched_setaffinity(process.pid, {self.core})
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 180)
        if line.strip() != b"ready":
            raise SystemExit(f"{label} server did not start; see {self.workdir / f'{label}.log'}")
        return process, port

    def batch(self, count: int) -> list[tuple[str, bytes, dict[str, str]]]:
        """``count`` new signed events, each the first message of its own thread; (thread ts, body, headers)."""
        out = []
        for _ in range(count):
            i = self.sent
            self.sent += 1
            ts = f"{self.base + i // 1000}.{i % 1000:06d}"
            customer = f"U0C{i % CUSTOMERS:04d}"
            event = message_event(customer, self.texts[i % len(self.texts)], ts=ts, team=CUSTOMER_TEAM,
                                  user_team=CUSTOMER_TEAM, source_team=CUSTOMER_TEAM)
            out.append((ts, *signed(event, f"EvRT{i:08d}")))
        return out

    async def load(self, port: int, requests: list[tuple[str, bytes, dict[str, str]]]
                   ) -> tuple[list[float], int, dict[str, float]]:
        """Send with ``concurrency`` in flight: acknowledgement latencies, non-2xx count, send time per thread."""
        url = f"http://127.0.0.1:{port}/slack/events"
        queue = iter(requests)
        acks: list[float] = []
        sent_at: dict[str, float] = {}
        failures = 0

        async def worker(http: ClientSession) -> None:
            nonlocal failures
            for ts, body, headers in queue:
                started = time.monotonic()
                sent_at[ts] = started
                async with http.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        failures += 1
                acks.append(time.monotonic() - started)

        async with ClientSession(connector=TCPConnector(limit=self.args.concurrency),
                                 timeout=ClientTimeout(total=60)) as http:
            await asyncio.gather(*(worker(http) for _ in range(self.args.concurrency)))
        return acks, failures, sent_at

    async def wait_answers(self, before: int, count: int, timeout: float) -> bool:
        try:
            await self.fake.wait_for(lambda f: f.count("chat.postMessage", SHARED) >= before + count, timeout)
            return True
        except TimeoutError:
            return False

    async def measure(self, kind: str, database: str, url: str, messages: int, *, profile: Path | None = None,
                      pg_data: Path | None = None) -> Run:
        label = f"{kind}-{database}" + ("-profile" if profile else "")
        process, port = await self.start(kind, url, label, profile)
        try:
            async with ClientSession() as control:
                warm = self.batch(self.args.warmup)
                before = self.fake.count("chat.postMessage", SHARED)
                await self.load(port, warm)
                if not await self.wait_answers(before, len(warm), 300):
                    raise SystemExit(f"{label}: the warm-up was not answered; see {self.workdir / f'{label}.log'}")
                async with control.post(f"http://127.0.0.1:{port}/bench/start") as response:
                    assert response.status == 200
                requests = self.batch(messages)
                mark, cards = len(self.fake.calls), self.fake.count("chat.postMessage", INTERNAL)
                before = self.fake.count("chat.postMessage", SHARED)
                db_before = cpu_seconds(postgres_pids(pg_data)) if pg_data else None
                began, cores = time.monotonic(), core_times()
                acks, failures, sent_at = await self.load(port, requests)
                complete = await self.wait_answers(before, messages, max(120.0, messages / 10))
                ended, busy = time.monotonic(), core_busy(cores, core_times())
                async with control.post(f"http://127.0.0.1:{port}/bench/stop",
                                        timeout=ClientTimeout(total=180)) as response:
                    stats = await response.json()
                db_cpu = cpu_seconds(postgres_pids(pg_data)) - db_before if pg_data and db_before is not None else None
        finally:
            process.terminate()
            await process.wait()
        answers = [c for c in self.fake.calls[mark:] if c.applied and c.method == "chat.postMessage"
                   and c.args.get("channel") == SHARED and str(c.args.get("thread_ts")) in sent_at]
        threads = {str(c.args["thread_ts"]) for c in answers}
        if complete and answers:
            ended = max(c.at for c in answers)
        latencies = [c.at - sent_at[str(c.args["thread_ts"])] for c in answers]
        return Run(kind, database, messages, acks, failures, ended - began, len(threads), latencies, stats,
                   self.fake.count("chat.postMessage", INTERNAL) - cards, db_cpu, busy, self.core)


def table(runs: list[Run], concurrency: int) -> list[str]:
    lines = [f"{'database':10} {'server':6} {'msg/s e2e':>9} {'ack p50':>8} {'ack p99':>8} {'answer p50':>10} "
             f"{'answer p99':>10} {'CPU ms/msg':>10} {'engine':>6} {'DB CPU ms':>9} {'SQL/msg':>7} {'txn/msg':>7} "
             f"{'answered':>9} {'non-200':>7}  server core: own+others, load core"]
    for r in runs:
        db_cpu = f"{1000 * r.db_cpu / r.messages:9.2f}" if r.db_cpu is not None else f"{'-':>9}"
        engine = f"{r.engine_ms:6.2f}" if r.kind == "baton" else f"{'-':>6}"
        lines.append(
            f"{r.database:10} {r.kind:6} {r.rate:9.0f} {r.ack(0.5):6.1f}ms {r.ack(0.99):6.1f}ms "
            f"{1000 * quantile(r.answer_latencies, 0.5):8.0f}ms {1000 * quantile(r.answer_latencies, 0.99):8.0f}ms "
            f"{r.cpu_ms:10.2f} {engine} {db_cpu} {r.per_message('statements'):7.1f} {r.per_message('commits'):7.2f} "
            f"{r.answered:>4}/{r.messages:<4} {r.non_200:7d}  {100 * r.shares[0]:3.0f}%+{100 * r.shares[1]:.0f}%, "
            f"{100 * r.shares[2]:.0f}%")
    lines.append(f"  ({concurrency} requests in flight; CPU ms/msg: the server process, all its threads; engine: "
                 "of which in Engine.decide (no I/O: the runtime is the rest); DB CPU: "
                 "the PostgreSQL server's processes; txn: commits; answer: event sent -> its reply at the fake; "
                 "server core: how busy the server kept its core, and other processes beside it)")
    crowded = [r for r in runs if r.shares[1] > 0.1]
    if crowded:
        most = max(100 * r.shares[1] for r in crowded)
        lines.append(f"  NOTE: other processes took up to {most:.0f}% of the server's core "
                     "during some runs: their rates and latencies are lower than this machine gives alone; CPU, SQL "
                     "and transactions per message stand")
    return lines


def bars(runs: list[Run], concurrency: int) -> list[str]:
    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    lines = []
    for r in runs:
        if r.kind != "baton":
            continue
        complete = r.answered == r.messages and r.non_200 == 0
        if r.database == "postgres":
            lines.append(f"  {verdict(complete and r.rate >= BAR_RATE)}  {r.database}: {r.rate:.0f} messages/s end to "
                         f"end (bar >= {BAR_RATE:.0f})")
        lines.append(f"  {verdict(complete and r.cpu_ms <= BAR_CPU_MS)}  {r.database}: {r.cpu_ms:.2f} CPU ms per "
                     f"how-to message (bar <= {BAR_CPU_MS:.0f}); {r.engine_ms:.2f} of them in Engine.decide, "
                     f"{r.cpu_ms - r.engine_ms:.2f} in the runtime")
        lines.append(f"  {verdict(complete and r.ack(0.99) < BAR_ACK_P99_MS)}  {r.database}: acknowledgement p99 "
                     f"{r.ack(0.99):.1f} ms at {concurrency} in flight (bar < {BAR_ACK_P99_MS:.0f})")
        lines.append(f"        {r.database}: {r.per_message('commits'):.2f} transactions/message (issue #13: <= 3), "
                     f"{r.per_message('statements'):.1f} statements, {r.per_message('rollbacks'):.2f} rollbacks; "
                     f"{r.handoffs} handoff cards")
    return lines


def statements(run: Run, top: int = 25) -> list[str]:
    lines = [f"Baton's SQL statements on {run.database}, per message ({run.per_message('statements'):.1f} in all; "
             f"{run.per_message('commits'):.2f} commits):"]
    for text, n in run.stats["texts"][:top]:
        if n / run.messages >= 0.01:
            lines.append(f"  {n / run.messages:5.2f}  {text}")
    return lines


_LOOP = re.compile(r"asyncio/(base_events|events|selector_events|runners|tasks)\.py|runtime\.py")
"""The event loop's own frames (and this file's): they contain everything."""


def profile_summary(path: Path, messages: int, cpu: float, top: int = 15) -> list[str]:
    """The top ``top`` entries by inclusive ("cumulative") and by own time, and own time by package, in CPU ms per
    message: each function's share of the samples times the process's CPU time."""
    sampled = json.loads(path.read_text())
    busy, idle = int(sampled["busy"]), int(sampled["idle"])
    scale = 1000 * cpu / max(1, busy + idle) / messages

    def name(key: str) -> str:
        for marker in ("site-packages/", str(ROOT) + "/", "python3.11/"):
            if marker in key:
                return key.split(marker, 1)[1]
        return key

    def package(key: str) -> str:
        if "site-packages/" in key:
            return key.split("site-packages/", 1)[1].split("/", 1)[0].split(":", 1)[0].removesuffix(".py")
        if str(ROOT) + "/" in key:
            folder = key.split(str(ROOT) + "/", 1)[1].split("/", 1)[0]
            return folder + ("/ (Baton)" if folder in ("bot", "adapters") else "/ (this benchmark's counters)")
        if "python3.11/" in key:
            return "stdlib " + key.split("python3.11/", 1)[1].split("/", 1)[0].split(":", 1)[0].removesuffix(".py")
        return key

    total = max(1, busy + idle)
    lines = [f"  {total} samples (one per {1000 * cpu / total:.1f} ms of the process's CPU); {idle * scale:.2f} ms/msg "
             f"({100 * idle / total:.0f}%) in other threads while the event loop waited (database driver)",
             f"  top {top} inclusive (cumulative; the event loop's own frames left out), CPU ms/msg:"]
    shown: set[str] = set()
    for key, n in sampled["inclusive"]:
        if _LOOP.search(key):
            continue
        lines.append(f"    {n * scale:6.2f}  {100 * n / total:3.0f}%  {name(key)}")
        shown.add(key)
        if len(shown) == top:
            break
    lines.append("  then Baton's own functions (bot/, adapters/), inclusive:")
    own_code = [(key, n) for key, n in sampled["inclusive"] if key not in shown and str(ROOT) in key
                and re.search(r"/(bot|adapters)/[^:]*:", key) and 100 * n / total >= 1]
    for key, n in own_code[:top]:
        lines.append(f"    {n * scale:6.2f}  {100 * n / total:3.0f}%  {name(key)}")
    lines.append(f"  top {top} by own time:")
    for key, n in sampled["own"][:top]:
        lines.append(f"    {n * scale:6.2f}  {100 * n / total:3.0f}%  {name(key)}")
    grouped: Counter[str] = Counter()
    for key, n in sampled["own"]:
        grouped[package(key)] += n
    lines.append("  own time by package:")
    for group, n in grouped.most_common(12):
        lines.append(f"    {n * scale:6.2f}  {100 * n / total:3.0f}%  {group}")
    return lines


async def main(args: argparse.Namespace) -> None:
    cores = sorted(os.sched_getaffinity(0))
    server_core = cores[0] if len(cores) > 1 else None
    if server_core is not None:
        os.sched_setaffinity(0, set(cores[1:]))  # PostgreSQL, started below, inherits the load's cores
    databases = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    profiled = args.profile if args.profile != "auto" else ("postgres" if "postgres" in databases else databases[0])
    fake = FakeSlack()
    api_url = await fake.start()
    workdir = Path(tempfile.mkdtemp(prefix="baton-runtime-"))
    cluster: Any = None
    runs: list[Run] = []
    profile_lines: list[str] = []
    began = time.monotonic()
    try:
        if "postgres" in databases or profiled == "postgres":
            from pg import PostgresUnavailable, fresh_database, start_cluster

            try:
                cluster = start_cluster()
            except PostgresUnavailable as exc:
                if args.database == "postgres":
                    raise SystemExit(str(exc)) from None
                print(f"PostgreSQL skipped: {exc}")
                databases = [d for d in databases if d != "postgres"]
                profiled = "sqlite" if profiled == "postgres" else profiled
        bench = Bench(args, fake, api_url, workdir, server_core)

        async def url(kind: str, database: str) -> str:
            if database == "postgres":
                return str(await fresh_database(cluster.url))
            return f"sqlite+aiosqlite:///{workdir / f'{kind}-{len(runs)}.db'}"

        for database in databases:
            pg_data = cluster.data if database == "postgres" else None
            for kind in ("floor", "baton"):
                runs.append(await bench.measure(kind, database, await url(kind, database), args.messages,
                                                pg_data=pg_data))
        if profiled != "none" and args.profile_messages > 0:
            path = workdir / "baton-profile.json"
            run = await bench.measure("baton", profiled, await url("baton", profiled), args.profile_messages,
                                      profile=path)
            other_ms = 1000 * (run.stats["cpu_s"] - run.stats["main_cpu_s"]) / run.messages
            profile_lines = [f"Where Baton's CPU goes, on {profiled} (a separate run of {run.messages} messages, "
                             f"sampled): {run.rate:.0f} messages/s, ack p50/p99 {run.ack(0.5):.0f}/{run.ack(0.99):.0f} "
                             f"ms, server core {100 * run.shares[0]:.0f}%+{100 * run.shares[1]:.0f}% (own+others); "
                             f"{run.cpu_ms:.2f} CPU ms/msg, of which "
                             f"{other_ms:.2f} in threads other than the event loop's",
                             *profile_summary(path, run.messages, float(run.stats["cpu_s"]))]
    finally:
        await fake.close()
        if cluster is not None:
            cluster.remove()
        if args.keep:
            print(f"logs, databases and the profile kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"Runtime end to end: {args.messages} distinct how-to questions per server (each its own thread, "
          f"{CUSTOMERS} customers) after {args.warmup} for warm-up; servers pinned to core {server_core}, "
          f"load, fake Slack and PostgreSQL on {sorted(os.sched_getaffinity(0))}; {time.monotonic() - began:.0f} s")
    for line in table(runs, args.concurrency):
        print(line)
    floors = {r.database: r for r in runs if r.kind == "floor"}
    for r in runs:
        if r.kind == "baton" and r.database in floors:
            f = floors[r.database]
            print(f"  {r.database}: Baton / floor: throughput {r.rate / f.rate:.2f}, CPU per message "
                  f"{r.cpu_ms / f.cpu_ms:.1f}x")
    print("Bars (issue #13):")
    for line in bars(runs, args.concurrency):
        print(line)
    for r in runs:
        if r.kind == "baton":
            for line in statements(r):
                print(line)
    for line in profile_lines:
        print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--profile", choices=["auto", "sqlite", "postgres", "none"], default="auto",
                        help="a separate, profiled Baton run on this database (auto: PostgreSQL if measured)")
    parser.add_argument("--profile-messages", type=int, default=500)
    parser.add_argument("--keep", action="store_true", help="keep the servers' logs, databases and the profile")
    parser.add_argument("--serve", choices=["floor", "baton"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--api", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve == "baton":
        asyncio.run(serve_baton(arguments.port, arguments.api, arguments.url, arguments.profile_to))
    elif arguments.serve == "floor":
        asyncio.run(serve_floor(arguments.port, arguments.api, arguments.url))
    else:
        if arguments.messages + arguments.warmup > len(questions()):
            print(f"note: only {len(questions())} distinct questions: texts repeat within a run")
        asyncio.run(main(arguments))
