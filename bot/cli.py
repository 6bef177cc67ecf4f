"""The commands behind ``python -m bot``. Each takes the parsed arguments and returns an exit code.

``triage``, ``replay`` and ``eval`` run the engine as a deployment does: with ``OPENAI_API_KEY`` set,
each customer message also gets the language model's second opinion (extra signals, and an answer
grounded in the help center's passages), exactly as :meth:`bot.service.Service._from_customer` asks
it, a few calls at a time, the output in input order; a call that fails leaves that row's offline
decision standing. Without a key, or with ``--offline``, the rules alone decide.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from bot.engine import Engine
from bot.evaluation import CALM, LabelledRow, Report
from bot.jsonl import open_input, read_models
from bot.knowledge import KnowledgeBase, KnowledgeError
from bot.model import Decision, Storable
from bot.policy import Policy, PolicyError, load_policy, zone
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.app import Role
    from bot.llm import LanguageModel, Opinion
    from bot.service import Service
    from bot.store import Store

T = TypeVar("T")

CONCURRENCY = 8
"""Model calls in flight at once in the batch commands (``triage``, ``eval``, ``replay``)."""
PLAYGROUND_LOG = Path("baton-playground.log")


class UsageError(Exception):
    """A problem the person at the keyboard can fix; printed without a traceback."""


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:
        raise UsageError(f"configuration: {exc}") from None


def _policy(args: argparse.Namespace, settings: Settings) -> Policy:
    try:
        return load_policy(args.policy or settings.policy)
    except PolicyError as exc:
        raise UsageError(f"invalid policy:\n{exc}") from None


def _engine(args: argparse.Namespace, settings: Settings, *, knowledge: bool = True) -> Engine:
    """The engine with the configured policy and (unless ``knowledge=False``) help center."""
    policy = _policy(args, settings)
    if not knowledge:
        return Engine(policy)
    folder = getattr(args, "knowledge", None) or settings.knowledge
    try:
        return Engine(policy, KnowledgeBase.load(folder, policy.knowledge))
    except KnowledgeError as exc:
        raise UsageError(f"invalid help center: {exc}") from None


def _language_model(settings: Settings, *, offline: bool, store: Store | None = None) -> LanguageModel | None:
    """The configured model, or ``None`` (no key, or ``--offline``). openai is imported only then."""
    if offline or settings.openai_api_key is None:
        return None
    from bot.llm import LanguageModel

    return LanguageModel.from_settings(settings, store)


@dataclass
class Assist:
    """The language model's second opinion on single customer messages, for the batch commands.

    It is asked as :meth:`bot.service.Service._from_customer` asks it for the first message of a
    conversation: the help center's passages are given when the offline decision may answer (an intent
    that answers, not escalated, or escalated only because the help center had no answer); its signals
    and grounded answer then go back into the engine, which may only add caution. A failed, skipped or
    late call (``first_reply`` seconds, as live) leaves the offline decision standing.
    """

    llm: LanguageModel
    first_reply: float
    concurrency: int = CONCURRENCY
    asked: int = 0
    fell_back: int = 0
    _lanes: asyncio.Semaphore | None = field(default=None, repr=False)

    async def opinion(self, engine: Engine, text: str, offline: Decision) -> Opinion | None:
        passages = engine.passages_for_model(text, offline)
        if self._lanes is None:
            self._lanes = asyncio.Semaphore(self.concurrency)
        async with self._lanes:
            self.asked += 1
            try:
                async with asyncio.timeout(self.first_reply):
                    opinion = await self.llm.opinion(text, passages, conversation_id=None)
            except TimeoutError:
                opinion = None
        if opinion is None:
            self.fell_back += 1
        return opinion

    async def decide(self, engine: Engine, text: str, offline: Decision, *, now: datetime | None = None,
                     zone: str | None = None) -> Decision:
        opinion = await self.opinion(engine, text, offline)
        if opinion is None or not (opinion.signals or opinion.answer):
            return offline
        return engine.triage(text, now=now, zone=zone, extra=opinion.signals, grounded=opinion.answer)

    def usage(self) -> str:
        return (f"model {self.llm.model}: {self.asked} messages asked, {self.fell_back} without an answer "
                f"(their offline decision stands), {self.llm.tokens} tokens")


async def _ordered(items: Iterator[T], work: Callable[[T], Coroutine[Any, Any, str]], out: IO[str], *,
                   window: int) -> None:
    """Run ``work(item)`` (a coroutine returning text) for each item, up to ``window`` at once, and
    write the results in input order as soon as they are ready. Items are read off the event loop,
    so a slow input does not hold up the calls in flight."""
    pending: deque[asyncio.Task[str]] = deque()
    while (item := await asyncio.to_thread(next, items, None)) is not None:
        pending.append(asyncio.create_task(work(item)))
        while pending and (len(pending) >= window or pending[0].done()):
            out.write(await pending.popleft())
        out.flush()
    while pending:
        out.write(await pending.popleft())
    out.flush()


# ---- triage ----


def _zone_name(name: str) -> str:
    zone(name)  # raises ValueError naming the zone when it is unknown
    return name


ZoneName = Annotated[str, AfterValidator(_zone_name)]
"""An IANA time zone's name, checked."""


class TriageInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: Any = None
    text: str
    now: datetime | None = None
    tz: ZoneName | None = None


def _open(name: str) -> AbstractContextManager[IO[str]]:
    if name != "-" and not Path(name).is_file():
        raise UsageError(f"cannot read {name}: no such file")
    return open_input(name)


@dataclass(frozen=True)
class _Moment:
    """``--now`` and ``--tz``: the defaults for a line without its own ``now`` / ``tz``."""

    tz: str | None
    zone: tzinfo
    now: datetime | None

    @classmethod
    def of(cls, args: argparse.Namespace) -> _Moment:
        try:
            return cls(args.tz, zone(args.tz) if args.tz else UTC,
                       datetime.fromisoformat(args.now) if args.now else None)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def of_row(self, row: TriageInput) -> tuple[datetime, str | None]:
        line_zone = ZoneInfo(row.tz) if row.tz else self.zone
        now = row.now or self.now or datetime.now(line_zone)
        if now.tzinfo is None:
            now = now.replace(tzinfo=line_zone)
        return now, row.tz or self.tz


Row = tuple[int, "TriageInput | None", str | None, Any]
"""One input line as :func:`bot.jsonl.read_models` yields it."""


def triage(args: argparse.Namespace) -> int:
    """DESIGN.md's contract: one JSON line out per line in, in order; sends nothing."""
    settings = _settings()
    engine = _engine(args, settings)
    moment = _Moment.of(args)
    llm = _language_model(settings, offline=args.offline)

    def printed(row_id: Any, decision: Decision) -> str:
        return json.dumps({"id": row_id, **decision.contract()}, ensure_ascii=False) + "\n"

    def refused(raw_id: Any, error: str | None) -> str:
        return json.dumps({"id": raw_id, "error": error}) + "\n"

    with _open(args.file) as stream:
        rows: Iterator[Row] = read_models(stream, TriageInput)
        if llm is None:  # the rules alone: no event loop, nothing per message but the engine
            out = sys.stdout
            jobs = args.jobs if getattr(args, "jobs", 0) > 0 else min(os.cpu_count() or 1, MAX_JOBS)
            if jobs > 1:
                _triage_in_processes(engine, rows, moment, out, jobs=jobs)
                return 0
            for _number, row, error, raw_id in rows:
                if row is None:
                    out.write(refused(raw_id, error))
                    continue
                now, zone_name = moment.of_row(row)
                out.write(printed(row.id, engine.triage(row.text, now=now, zone=zone_name)))
            return 0
        assist = Assist(llm, settings.first_reply)

        async def one(item: Row) -> str:
            _number, row, error, raw_id = item
            if row is None:
                return refused(raw_id, error)
            now, zone_name = moment.of_row(row)
            offline = engine.triage(row.text, now=now, zone=zone_name)
            return printed(row.id, await assist.decide(engine, row.text, offline, now=now, zone=zone_name))

        asyncio.run(_ordered(rows, one, sys.stdout, window=4 * assist.concurrency))
    if assist.fell_back:
        print(f"baton: {assist.usage()}", file=sys.stderr)
    return 0


MAX_JOBS = 4
CHUNK = 64
"""Input lines per piece of work sent to a ``triage`` worker process."""
_worker_engine: Engine | None = None
"""The engine in a ``triage`` worker process: the parent's, inherited when the worker is forked."""


def _decide_chunk(chunk: list[tuple[str, datetime, str | None] | None]) -> list[str | None]:
    """In a worker: the ``triage`` contract, as JSON, for each message of ``chunk`` (``None`` stays ``None``)."""
    engine = _worker_engine
    assert engine is not None
    return [None if item is None else
            json.dumps(engine.triage(item[0], now=item[1], zone=item[2]).contract(), ensure_ascii=False)
            for item in chunk]


def _triage_in_processes(engine: Engine, rows: Iterator[Row], moment: _Moment, out: IO[str], *, jobs: int) -> None:
    """The offline ``triage`` loop over ``jobs`` forked processes, in chunks, output in input order.
    Each worker shares the parent's engine (policy, rules, help center and embedding model), copied on
    write, so it starts at once and is the same engine."""
    import multiprocessing

    global _worker_engine
    _worker_engine = engine

    def chunks() -> Iterator[tuple[list[tuple[Any, str | None]], list[tuple[str, datetime, str | None] | None]]]:
        ids: list[tuple[Any, str | None]] = []
        work: list[tuple[str, datetime, str | None] | None] = []
        for _number, row, error, raw_id in rows:
            if row is None:
                ids.append((raw_id, error))
                work.append(None)
            else:
                now, zone_name = moment.of_row(row)
                ids.append((row.id, None))
                work.append((row.text, now, zone_name))
            if len(work) == CHUNK:
                yield ids, work
                ids, work = [], []
        if work:
            yield ids, work

    pieces = chunks()
    meta: deque[list[tuple[Any, str | None]]] = deque()

    def feed() -> Iterator[list[tuple[str, datetime, str | None] | None]]:
        for ids, work in pieces:
            meta.append(ids)
            yield work

    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        for decided in pool.imap(_decide_chunk, feed()):
            for (row_id, error), contract in zip(meta.popleft(), decided, strict=True):
                if contract is None:
                    out.write(json.dumps({"id": row_id, "error": error}) + "\n")
                else:
                    out.write('{"id": ' + json.dumps(row_id, ensure_ascii=False) + ", " + contract[1:] + "\n")
    _worker_engine = None


# ---- eval ----


def eval(args: argparse.Namespace) -> int:  # noqa: A001 - the command's name
    """Score the engine as it runs (with the help center) on labelled rows: risk escalations per
    category, help-center no-answer handoffs apart, and silent rows (see :mod:`bot.evaluation`)."""
    settings = _settings()
    engine = _engine(args, settings)
    rows: list[LabelledRow] = []
    errors = 0
    with _open(args.file) as stream:
        for _number, row, error, _raw in read_models(stream, LabelledRow):
            if row is None:
                print(error, file=sys.stderr)
                errors += 1
            else:
                rows.append(row)
    llm = _language_model(settings, offline=args.offline)
    offline = [engine.triage(r.text) for r in rows]
    reports = {"offline": _score(engine.policy, rows, offline, args.misses)}
    assist = None
    if llm is not None:
        assist = Assist(llm, settings.first_reply)

        async def all_rows(helper: Assist) -> list[Decision]:
            return list(await asyncio.gather(*(helper.decide(engine, r.text, d) for r, d in zip(rows, offline,
                                                                                                 strict=True))))

        reports[f"model-assisted ({llm.model})"] = _score(engine.policy, rows, asyncio.run(all_rows(assist)),
                                                          args.misses)
    if args.json:
        out: dict[str, Any] = {**reports["offline"][0].as_dict(), "errors": errors}
        if assist is not None:
            out["model_assisted"] = {**list(reports.values())[1][0].as_dict(), "model": assist.llm.model,
                                     "calls": assist.llm.calls, "tokens": assist.llm.tokens,
                                     "failed": assist.fell_back}
        print(json.dumps(out))
        return 0 if not errors else 1
    for title, (report, misses) in reports.items():
        if len(reports) > 1:
            print(f"== {title} ==")
        for line in report.lines():
            print(line)
        for heading, wrong in sorted(misses.items(), key=lambda item: item[0].split(" in ", 1)[::-1]):
            print(f"\n{heading}:")
            print("\n".join(wrong))
        if len(reports) > 1:
            print()
    if assist is not None:
        print(f"model calls: {assist.llm.calls} ({assist.fell_back} failed: those rows count as offline), "
              f"tokens: {assist.llm.tokens}")
    return 0 if not errors else 1


def _score(policy: Policy, rows: list[LabelledRow], decisions: list[Decision],
           misses_per_category: int) -> tuple[Report, dict[str, list[str]]]:
    report = Report(policy)
    misses: dict[str, list[str]] = {}
    for row, decision in zip(rows, decisions, strict=True):
        outcome = report.add(row, decision)
        risk = outcome == "risk"
        if not misses_per_category:
            continue
        if (risk if row.category in CALM else not risk):
            listed = misses.setdefault(f"wrong in {row.category}", [])
            if len(listed) < misses_per_category:
                why = ",".join(decision.rules) if risk else ("-" if outcome != "no_answer" else "no answer")
                listed.append(f"  {row.id} [{row.source}] {row.text!r} -> {why}")
        if outcome == "silent":
            listed = misses.setdefault(f"silent in {row.category}", [])
            if len(listed) < misses_per_category:
                listed.append(f"  {row.id} [{row.source}] {row.text!r} -> {','.join(decision.rules) or '-'}")
    return report, misses


def migrate(args: argparse.Namespace) -> int:
    from bot.database import shown

    settings = _settings()

    async def _run() -> None:
        store = await _open_store(settings)
        await store.close()

    asyncio.run(_run())
    print(f"database at {shown(settings.database_url)} is up to date")
    return 0


# ---- autonomy: what each intent has earned ----


def autonomy(args: argparse.Namespace) -> int:
    """Per intent: its mode, the figures over its review window, what they call for, and its last change.
    With ``--promote INTENT``, a lead confirms that intent's proposed promotion."""
    from bot import autonomy as earned

    settings = _settings()
    policy = _policy(args, settings)

    async def _run() -> dict[str, Any]:
        store = await _open_store(settings)
        try:
            if args.promote:
                if args.promote not in policy.intents:
                    raise UsageError(f"no intent {args.promote!r} in the policy: {', '.join(policy.intents)}")
                try:
                    await earned.promote(store, policy, args.promote, by=args.by)
                except ValueError as exc:
                    raise UsageError(str(exc)) from None
            return await earned.table(store, policy)
        finally:
            await store.close()

    table = asyncio.run(_run())
    if args.json:
        print(json.dumps({"window": policy.autonomy.window, "min_sample": policy.autonomy.min_sample,
                          "intents": table}, indent=2))
        return 0
    print(f"{'intent':<16} {'mode':<7} {'sample':>6} {'unedited':>9} {'edit':>5} {'rejected':>8}  "
          "last change / proposal")
    for intent, row in table.items():
        last = row["last_change"]
        why = (f"{last['previous']} -> {last['mode']} by {last['by']} at {last['at'][:16]}: {last['why']}"
               if last else "as the policy starts it")
        if row["proposed"]:
            why = f"PROPOSED: {row['mode']} -> {row['proposed']} (python -m bot autonomy --promote {intent}); " + why
        print(f"{intent:<16} {row['mode']:<7} {row['sample']:>6} {row['approved_unedited']:>9.0%} "
              f"{row['mean_edit_ratio']:>5.2f} {row['rejected']:>8.0%}  {why}")
    return 0


# ---- report ----


def _period(args: argparse.Namespace, policy: Policy, *, today: datetime | None = None) -> tuple[datetime, datetime]:
    """``--since`` and ``--until`` as a half-open period: days are whole days in the business-hours zone (the
    last one included), ISO-8601 moments are taken as they are (``--until`` excluded)."""
    zone = ZoneInfo(policy.business_hours.timezone)

    def moment(text: str, *, end: bool) -> datetime:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            try:
                at = datetime.fromisoformat(text)
            except ValueError:
                raise UsageError(f"not a date (YYYY-MM-DD) or an ISO-8601 moment: {text!r}") from None
            return at if at.tzinfo else at.replace(tzinfo=zone)
        return datetime.combine(day + timedelta(days=1) if end else day, time(0), zone)

    now = (today or datetime.now(UTC)).astimezone(zone)
    until = moment(args.until, end=True) if args.until else datetime.combine(now.date() + timedelta(days=1),
                                                                            time(0), zone)
    since = moment(args.since, end=False) if args.since else until - timedelta(days=7)
    if until <= since:
        raise UsageError("--until must come after --since")
    return since, until


def report(args: argparse.Namespace) -> int:
    """The KPIs of a period (``python -m bot report``): JSON, CSV or a self-contained HTML file."""
    from bot import reports

    settings = _settings()
    policy = _policy(args, settings)
    since, until = _period(args, policy)

    async def _run() -> reports.Report:
        store = await _open_store(settings)
        try:
            return await reports.build(store, policy, since, until)
        finally:
            await store.close()

    built = asyncio.run(_run())
    if args.format == "json":
        text = json.dumps(built.to_json(), indent=2, ensure_ascii=False) + "\n"
    elif args.format == "csv":
        text = reports.to_csv(built)
    else:
        from bot import charts

        text = charts.render_html(built.to_json())
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"{args.format.upper()} report of {len(built.rows)} conversations written to {args.output}",
              file=sys.stderr)
    return 0


# ---- digest: the leads' weekly summary ----


def digest(args: argparse.Namespace) -> int:
    """The weekly digest now (``python -m bot digest``): posted to the leads' channel, or with ``--dry-run``
    printed as Block Kit JSON (and its chart written to ``--png``). A post made here is not counted as the
    week's: the timer still posts its own."""
    from bot import digest as weekly

    settings = _settings()
    policy = _policy(args, settings)
    now = datetime.now(UTC)
    if args.now:
        try:
            now = datetime.fromisoformat(args.now)
        except ValueError:
            raise UsageError(f"--now: not an ISO-8601 moment: {args.now!r}") from None
        now = now if now.tzinfo else now.replace(tzinfo=ZoneInfo(policy.business_hours.timezone))
    channel = args.channel or settings.leads_channel
    if not args.dry_run and not (settings.slack_bot_token and channel):
        raise UsageError("posting the digest needs SLACK_BOT_TOKEN and BATON_LEADS_CHANNEL (or --channel); "
                         "--dry-run prints it instead")
    if args.png and not args.dry_run:
        raise UsageError("--png goes with --dry-run")

    async def _run() -> weekly.Digest:
        store = await _open_store(settings)
        try:
            found = await weekly.compose(store, policy, now=now, chart=bool(args.png) or not args.dry_run)
        finally:
            await store.close()
        if not args.dry_run:
            from slack_sdk.web.async_client import AsyncWebClient

            assert settings.slack_bot_token is not None and channel
            client = AsyncWebClient(token=settings.slack_bot_token.get_secret_value(),
                                    base_url=settings.slack_api_url or AsyncWebClient.BASE_URL, timeout=30)
            await weekly.post(client, channel, found)
        return found

    found = asyncio.run(_run())
    if args.dry_run:
        if args.png and found.png:
            try:
                Path(args.png).write_bytes(found.png)
            except OSError as exc:
                raise UsageError(f"cannot write {args.png}: {exc.strerror}") from None
        print(json.dumps(weekly.dump(found), indent=2, ensure_ascii=False))
    else:
        print(f"digest of {found.since:%Y-%m-%d} to {found.until:%Y-%m-%d} posted to {channel}", file=sys.stderr)
    return 0


# ---- run: the platforms, or the playground ----


def run(args: argparse.Namespace) -> int:
    settings = _settings()
    from bot import logs

    if settings.slack_bot_token or settings.slack_signing_secret or settings.discord_token:
        logs.configure(settings.log_level)
        engine = _engine(args, settings)  # fail fast on a bad policy or help center
        _check_platforms(settings, engine)  # every problem at once, before anything starts
        return asyncio.run(_serve(engine, settings, getattr(args, "role", None) or settings.role))
    # The playground: logs go to a file, never between the lines of the conversation; configured
    # before anything is loaded, since loaders may warn (loggers are fixed at their first use).
    log_file = Path(getattr(args, "log_file", None) or PLAYGROUND_LOG)
    try:
        logs.configure(settings.log_level, file=log_file)
    except OSError as exc:
        raise UsageError(f"cannot write the log file {log_file}: {exc.strerror}") from None
    engine = _engine(args, settings)
    return _playground(engine, settings, args, log_file)


def _check_platforms(settings: Settings, engine: Engine) -> None:
    from adapters.slack import SlackConfig, SlackConfigError

    problems = []
    if settings.discord_token:
        from adapters.discord_gateway import DiscordConfig, DiscordConfigError

        try:
            DiscordConfig.from_settings(settings)
        except DiscordConfigError as exc:
            problems.append(str(exc))
        if not (settings.slack_bot_token or settings.slack_signing_secret):
            problems.append("Discord's handoffs go to an internal Slack channel, so Slack must be configured too: "
                            "set SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET and BATON_INTERNAL_CHANNEL")
    try:
        SlackConfig.from_settings(settings, engine.policy, customers_elsewhere=bool(settings.discord_token))
    except SlackConfigError as exc:
        problems.append(str(exc))
    if problems:
        raise UsageError("\n".join(dict.fromkeys(problems)))


def _llm(settings: Settings, store: Store) -> LanguageModel | None:
    """The language model when ``OPENAI_API_KEY`` is set (else ``None``: the offline engine)."""
    if settings.openai_api_key is None:
        return None
    from bot.llm import LanguageModel  # openai is imported only when it is used

    llm = LanguageModel.from_settings(settings, store)
    if llm is None:
        return None
    import structlog

    structlog.get_logger(__name__).info("llm_enabled", model=llm.model,
                                        endpoint=settings.openai_base_url or "https://api.openai.com/v1")
    return llm


def _service(engine: Engine, store: Store, settings: Settings) -> Service:
    """The service, with the language model when ``OPENAI_API_KEY`` is set (else the offline engine)."""
    from bot.service import Service

    return Service(engine, store, llm=_llm(settings, store), first_reply=settings.first_reply)


async def _open_store(settings: Settings) -> Store:
    """The store at ``BATON_DATABASE_URL``, its schema at head; a database that cannot be used (a bad URL,
    a missing driver, an unreachable server, a refused password...) is one line, not a traceback."""
    import contextlib

    import structlog

    from bot.database import explain
    from bot.store import Store

    url = settings.database_url
    try:
        store = Store(url)
    except Exception as exc:  # the URL or its driver
        structlog.get_logger(__name__).debug("database_unusable", exc_info=True)  # BATON_LOG_LEVEL=debug
        raise UsageError(explain(url, exc)) from None
    try:
        await store.migrate()
    except Exception as exc:  # the server, the credentials, the database, the file
        structlog.get_logger(__name__).debug("database_unusable", exc_info=True)
        with contextlib.suppress(Exception):  # closing what never opened must not replace the line below
            await store.close()
        raise UsageError(explain(url, exc)) from None
    return store


async def _serve(engine: Engine, settings: Settings, role: Role = "all") -> int:
    """Serve the configured platforms until SIGTERM or Ctrl-C (or until one gives up for good)."""
    import signal

    from bot.app import Application
    from bot.platform import PlatformConfigError

    store = await _open_store(settings)
    try:
        application = Application(settings, engine, store, llm=_llm(settings, store), role=role,
                                  workers=settings.workers)
    except PlatformConfigError as exc:
        await store.close()
        raise UsageError(str(exc)) from None

    async def serve() -> None:
        async with application:
            await application.closed()

    task = asyncio.create_task(serve())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        return 0
    except PlatformConfigError as exc:
        raise UsageError(str(exc)) from None
    finally:
        await store.close()
    return 0


def _playground(engine: Engine, settings: Settings, args: argparse.Namespace, log_file: Path) -> int:
    """The terminal conversation. Lines are read in the main thread (readline, Ctrl-C and Ctrl-D work
    as in any prompt) and each turn runs on one event loop that lives as long as the store."""
    from adapters.console import Console, Session

    shown = str(log_file) if log_file.is_absolute() or str(log_file).startswith(".") else f"./{log_file}"
    with asyncio.Runner() as runner:
        store = runner.run(_open_store(settings))
        try:
            service = _service(engine, store, settings)
            intro = [f"logs: {shown}",
                     f"engine: the rules with {service.llm.model}'s second opinion" if service.llm is not None
                     else "engine: the rules alone (no OPENAI_API_KEY)"]
            session: Session | None = None
            if getattr(args, "resume", False):
                session = runner.run(Console.last_session(store))
                intro.append("resuming the last run's customer and conversation" if session is not None
                             else "nothing to resume: you are a new customer")
            else:
                intro.append("you are a new customer (--resume continues the last run's conversation)")
            console = Console(service, sys.stdin, sys.stdout, timezone=args.tz, session=session)
            return console.run(runner, intro=intro)
        finally:
            runner.run(store.close())


# ---- replay ----


Name = Annotated[Storable, Field(max_length=64)]
"""A person's name or id, as the store keeps it."""


class ReplayMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["customer", "agent"]
    text: Storable
    at: datetime | None = None
    """When it was written (without a zone: in the conversation's ``tz``, else UTC); without ``at``, one
    minute after the message before it."""
    author: Name | None = None
    """Who wrote it: a name (staff: who replied, recorded as the author of the reply)."""


class ReplayOutcome(BaseModel):
    """What the humans did. Only ``escalated`` and ``route`` are compared with the bot; the rest is recorded
    by ``--record`` (times without a zone are in the conversation's ``tz``, else UTC)."""

    model_config = ConfigDict(extra="ignore")

    escalated: bool
    route: str | None = None
    escalated_at: datetime | None = None
    """When a person was asked to take it (default: the first staff reply or claim, whichever came first)."""
    claimed_by: Name | None = None
    claimed_at: datetime | None = None
    resolved_at: datetime | list[datetime] | None = None
    """When it was resolved; a list when it was resolved more than once (a customer message after a resolution
    reopened it)."""
    resolved_by: Name | None = None
    csat: int | None = Field(default=None, ge=1, le=5)

    @property
    def resolutions(self) -> list[datetime]:
        at = self.resolved_at
        return [] if at is None else [at] if isinstance(at, datetime) else list(at)


class ReplayConversation(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: Any = None
    messages: list[ReplayMessage] = Field(min_length=1)
    outcome: ReplayOutcome | None = None
    tz: ZoneName | None = None
    """The customer's IANA time zone, as a Slack profile gives it."""
    customer: str | None = None
    """The customer's id; conversations that share it are one customer's (for repeat contacts)."""
    platform: Annotated[str, Field(min_length=1, max_length=32)] = "slack"
    """Where it took place (``--record`` keeps it; the KPIs break down by platform)."""
    organisation: Name | None = None
    """The customer's organisation (a VIP or enterprise one changes the bot's decisions, as live)."""


def replay(args: argparse.Namespace) -> int:
    """Shadow mode: what Baton would have done at each turn of past conversations, and how that
    compares with what the humans did. Uses a throwaway SQLite store; sends nothing. With ``--record``,
    each conversation is also stored in the configured database with its human outcome (:mod:`bot.history`)."""
    settings = _settings()
    engine = _engine(args, settings)
    with _open(args.file) as stream:
        rows = list(read_models(stream, ReplayConversation))
    return asyncio.run(_replay(engine, rows, as_json=args.json, settings=settings,
                               offline=getattr(args, "offline", False), record=getattr(args, "record", False)))


def _customer_id(number: int, convo: ReplayConversation) -> str:
    """The replayed conversation's customer: its ``customer``, else one of its own."""
    return convo.customer or f"customer-{number}"


REPLAYED = ("replay", "replay", "replay")
"""The platform, workspace and channel of the replay's throwaway conversations (the thread: the line number)."""


async def _replay(engine: Engine, rows: list[Any], *, as_json: bool, settings: Settings | None = None,
                  offline: bool = True, record: bool = False) -> int:
    import tempfile

    from bot import history
    from bot.database import shown
    from bot.service import Service
    from bot.store import Store

    tally = {"conversations": 0, "with_outcome": 0, "agree": 0, "missed_escalations": 0, "extra_escalations": 0,
             "same_route": 0, "different_route": 0, "bad_lines": 0}
    recorded = {"stored": 0, "skipped": 0, "messages": 0, "not_recorded": 0}
    target = await _open_store(settings or _settings()) if record else None  # a bad database fails first
    with tempfile.TemporaryDirectory(prefix="baton-replay-") as folder:
        store = Store(f"sqlite+aiosqlite:///{folder}/replay.db")
        await store.migrate()
        llm = _language_model(settings, offline=offline, store=store) if settings is not None else None
        service = Service(engine, store, llm=llm, first_reply=settings.first_reply if settings else 10.0)
        # With a model, a few conversations run at once (their turns in order); one customer's
        # conversations run one after another in the file's order, so repeat contacts do not depend on timing.
        lanes = asyncio.Semaphore(CONCURRENCY if llm is not None else 1)
        customers: dict[str, asyncio.Lock] = {}

        async def one(number: int, convo: ReplayConversation) -> tuple[list[dict[str, Any]], str]:
            async with customers.setdefault(_customer_id(number, convo), asyncio.Lock()), lanes:
                times = history.moments(convo, datetime.now(UTC))
                turns = await _replay_conversation(service, number, convo, times)
                if target is None:
                    return turns, ""
                if (why := history.problem(convo)) is not None:
                    return turns, f"line {number}: not recorded: {why}"
                learned = await history.learned(store, *REPLAYED, f"{number}")
                stored = await history.record(target, convo, times, learned)
                recorded["stored" if stored is not None else "skipped"] += 1
                recorded["messages"] += stored or 0
                return turns, ""

        tasks = [asyncio.create_task(one(number, convo)) if convo is not None else None
                 for number, convo, _error, _raw in rows]
        try:
            for (number, convo, error, _raw), task in zip(rows, tasks, strict=True):
                if convo is None or task is None:
                    tally["bad_lines"] += 1
                    why = (error or "").removeprefix(f"line {number}: ")
                    print(f"line {number}: skipped: {why}", file=sys.stderr)
                    continue
                turns, refused = await task
                if refused:
                    recorded["not_recorded"] += 1
                    print(refused, file=sys.stderr)
                tally["conversations"] += 1
                verdict = _verdict(convo, turns, tally)
                _print_replay(convo.id, turns, verdict, as_json=as_json)
        finally:
            running = [task for task in tasks if task is not None and not task.done()]
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            await store.close()
            if target is not None:
                await target.close()
    if as_json:
        print(json.dumps({"summary": tally}))
    else:
        print("\nsummary: " + ", ".join(f"{k}={v}" for k, v in tally.items()))
    if target is not None:
        print(f"baton: recorded into {shown(target.url)}: stored={recorded['stored']} conversations, "
              f"skipped={recorded['skipped']} (recorded before), messages={recorded['messages']}"
              + (f", not recorded={recorded['not_recorded']}" if recorded["not_recorded"] else ""), file=sys.stderr)
    return 0


async def _replay_conversation(service: Service, number: int, convo: ReplayConversation,
                               times: list[datetime]) -> list[dict[str, Any]]:
    """Each turn through the service as live, at its time (see :func:`bot.history.moments`); a resolution
    in the outcome resolves the conversation at its time, so that a later customer message reopens it as
    live. Per customer turn, the ``triage`` contract's fields."""
    from bot import history
    from bot.model import Message, Person, Role

    customer = Person(id=_customer_id(number, convo), role=Role.customer, timezone=convo.tz,
                      organisation=convo.organisation)
    zone = history.zone_of(convo)
    resolutions = sorted(history.aware(t, zone) for t in convo.outcome.resolutions) if convo.outcome else []
    turns: list[dict[str, Any]] = []
    for index, (msg, at) in enumerate(zip(convo.messages, times, strict=True)):
        while resolutions and resolutions[0] <= at:
            resolutions.pop(0)
            found = await service.store.find_conversation(*REPLAYED, f"{number}")
            if found is not None:
                await service.store.resolve(found.id, "history", awaiting_csat=False)
        author = customer.model_copy(update={"name": msg.author}) if msg.role == "customer" else \
            Person(id=msg.author or "agent", name=msg.author, role=Role.staff)
        outcome = await service.handle(Message(
            platform=REPLAYED[0], workspace=REPLAYED[1], channel=REPLAYED[2], thread=f"{number}",
            author=author, text=msg.text, at=at, event_id=history.event_id(f"{number}", index)))
        turn: dict[str, Any] = {"turn": index + 1, "role": msg.role}
        decision = outcome.decision
        if decision is not None:
            turn.update(decision.contract())
            turn.update(held=[h[0] for h in decision.held],
                        state=outcome.state.value if outcome.state is not None else None)
        turns.append(turn)
    return turns


def _verdict(convo: ReplayConversation, turns: list[dict[str, Any]], tally: dict[str, int]) -> dict[str, Any]:
    first = next((t for t in turns if t.get("escalate")), None)
    escalated_at = first["turn"] if first is not None else None
    route = first["route"] if first is not None else None
    verdict: dict[str, Any] = {"escalated": escalated_at is not None, "escalated_at_turn": escalated_at,
                               "route": route}
    if convo.outcome is not None:
        tally["with_outcome"] += 1
        human = convo.outcome
        verdict["human"] = human.model_dump(mode="json", include={"escalated", "route"} | human.model_fields_set)
        if human.escalated and escalated_at is None:
            tally["missed_escalations"] += 1
            verdict["agreement"] = "missed escalation"
        elif not human.escalated and escalated_at is not None:
            tally["extra_escalations"] += 1
            verdict["agreement"] = "extra escalation"
        else:
            tally["agree"] += 1
            verdict["agreement"] = "agree"
            if human.escalated and human.route:
                same = human.route == route
                tally["same_route" if same else "different_route"] += 1
                verdict["agreement"] = "agree, same route" if same else f"agree, but routed to {route}"
    return verdict


def _print_replay(conversation_id: Any, turns: list[dict[str, Any]], verdict: dict[str, Any], *,
                  as_json: bool) -> None:
    if as_json:
        print(json.dumps({"id": conversation_id, "turns": turns, **verdict}, ensure_ascii=False))
        return
    print(f"\n== conversation {conversation_id}")
    for turn in turns:
        if "intent" not in turn:
            print(f"  {turn['turn']}. agent replied: Baton stays silent (the conversation is claimed)")
            continue
        what = f"escalate to {turn['route']} ({turn['severity']})" if turn["escalate"] else "handle"
        print(f"  {turn['turn']}. {turn['role']}: {turn['intent']} -> {what}")
        if turn["signals"]:
            print("     signals: " + ", ".join(f"{s['kind']}:{s['severity']} ({s['evidence']!r})"
                                           for s in turn["signals"]))
        gathered = {k: v for k, v in turn["details"].items() if v}
        if gathered or turn["missing"]:
            print("     details: " + (", ".join(f"{k}={v}" for k, v in gathered.items()) or "-")
                  + (f"; missing: {', '.join(turn['missing'])}" if turn["missing"] else ""))
        if turn["reply"]:
            print("     would say: " + turn["reply"].replace("\n", "\n                "))
        for held in turn["held"]:
            print(f"     held by the guard: {held}")
    did = f"escalated at turn {verdict['escalated_at_turn']}" if verdict["escalated"] else "did not escalate"
    line = f"  Baton {did}"
    if "agreement" in verdict:
        line += f"; humans: {'escalated' if verdict['human']['escalated'] else 'did not'} -> {verdict['agreement']}"
    print(line)
