"""The commands behind ``python -m bot``. Each takes the parsed arguments and returns an exit code."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.engine import Engine
from bot.evaluation import CALM, LabelledRow, Report
from bot.jsonl import open_input, read_models
from bot.knowledge import KnowledgeBase, KnowledgeError
from bot.policy import Policy, PolicyError, load_policy, zone
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.service import Service
    from bot.store import Store


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


class TriageInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: Any = None
    text: str
    now: datetime | None = None
    tz: str | None = None

    @field_validator("tz")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        if v is not None:
            zone(v)
        return v


def _open(name: str) -> AbstractContextManager[IO[str]]:
    if name != "-" and not Path(name).is_file():
        raise UsageError(f"cannot read {name}: no such file")
    return open_input(name)


def triage(args: argparse.Namespace) -> int:
    """DESIGN.md's contract: one JSON line out per line in, in order; sends nothing."""
    engine = _engine(args, _settings())
    try:
        default_zone = zone(args.tz) if args.tz else UTC
        default_now = datetime.fromisoformat(args.now) if args.now else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    out = sys.stdout
    with _open(args.file) as stream:
        for _number, row, error, raw_id in read_models(stream, TriageInput):
            if row is None:
                out.write(json.dumps({"id": raw_id, "error": error}) + "\n")
                continue
            line_zone = ZoneInfo(row.tz) if row.tz else default_zone
            now = row.now or default_now or datetime.now(line_zone)
            if now.tzinfo is None:
                now = now.replace(tzinfo=line_zone)
            decision = engine.triage(row.text, now=now, zone=row.tz or args.tz)
            out.write(json.dumps({"id": row.id, **decision.contract()}, ensure_ascii=False) + "\n")
    return 0


def eval(args: argparse.Namespace) -> int:  # noqa: A001 - the command's name
    # Scores the risk detectors: a question the help center cannot answer is handed to a person too,
    # but that is not a risk escalation, so the help center is left out here.
    settings = _settings()
    engine = _engine(args, settings, knowledge=False)
    rows: list[LabelledRow] = []
    errors = 0
    with _open(args.file) as stream:
        for _number, row, error, _raw in read_models(stream, LabelledRow):
            if row is None:
                print(error, file=sys.stderr)
                errors += 1
            else:
                rows.append(row)
    llm = None
    if settings.openai_api_key is not None and not args.offline:
        from bot.llm import LanguageModel

        llm = LanguageModel.from_settings(settings, None)
    reports = {"offline": _score(rows, [engine.triage(r.text) for r in rows], args.misses)}
    if llm is not None:
        extra = asyncio.run(_second_opinions(llm, [r.text for r in rows]))
        decisions = [engine.triage(r.text, extra=signals or ()) for r, signals in zip(rows, extra, strict=True)]
        reports[f"model-assisted ({llm.model})"] = _score(rows, decisions, args.misses)
        usage = {"calls": llm.calls, "tokens": llm.tokens, "failed": sum(s is None for s in extra)}
    if args.json:
        out: dict[str, Any] = {**reports["offline"][0].as_dict(), "errors": errors}
        if llm is not None:
            out["model_assisted"] = {**list(reports.values())[1][0].as_dict(), "model": llm.model, **usage}
        print(json.dumps(out))
        return 0 if not errors else 1
    for title, (report, misses) in reports.items():
        if len(reports) > 1:
            print(f"== {title} ==")
        for line in report.lines():
            print(line)
        for category, wrong in sorted(misses.items()):
            print(f"\nwrong in {category}:")
            print("\n".join(wrong))
        if len(reports) > 1:
            print()
    if llm is not None:
        print(f"model calls: {usage['calls']} ({usage['failed']} failed: those rows count as offline), "
              f"tokens: {usage['tokens']}")
    return 0 if not errors else 1


def _score(rows: list[LabelledRow], decisions: list[Any],
           misses_per_category: int) -> tuple[Report, dict[str, list[str]]]:
    report = Report()
    misses: dict[str, list[str]] = {}
    for row, decision in zip(rows, decisions, strict=True):
        report.add(row, decision)
        wrong = decision.escalate if row.category in CALM else not decision.escalate
        if misses_per_category and wrong and len(misses.setdefault(row.category, [])) < misses_per_category:
            why = ",".join(decision.rules) if decision.escalate else "-"
            misses[row.category].append(f"  {row.id} [{row.source}] {row.text!r} -> {why}")
    return report, misses


async def _second_opinions(llm: Any, texts: list[str], concurrency: int = 8) -> list[Any]:
    """The model's extra signals for each text (``None`` where the call failed), a few calls at a time."""
    lanes = asyncio.Semaphore(concurrency)

    async def one(text: str) -> Any:
        async with lanes:
            opinion = await llm.opinion(text, [], conversation_id=None)
            return opinion.signals if opinion is not None else None

    return list(await asyncio.gather(*(one(t) for t in texts)))


def migrate(args: argparse.Namespace) -> int:
    from bot.store import Store

    settings = _settings()

    async def _run() -> None:
        store = Store(settings.database_url)
        try:
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(_run())
    print(f"database at {Store.describe(settings.database_url)} is up to date")
    return 0


def run(args: argparse.Namespace) -> int:
    settings = _settings()
    engine = _engine(args, settings)  # fail fast on a bad policy or help center
    from bot import logs

    if settings.slack_bot_token or settings.slack_signing_secret or settings.discord_token:
        _check_platforms(settings, engine)  # every problem at once, before anything starts
        logs.configure(settings.log_level)
        return asyncio.run(_serve(engine, settings))
    logs.configure(settings.log_level if settings.log_level != "info" else "warning")
    return asyncio.run(_playground(engine, settings, timezone=args.tz))


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


def _service(engine: Engine, store: Store, settings: Settings) -> Service:
    """The service, with the language model when ``OPENAI_API_KEY`` is set (else the offline engine)."""
    from bot.service import Service

    llm = None
    if settings.openai_api_key is not None:  # openai is imported only when it is used
        from bot.llm import LanguageModel

        llm = LanguageModel.from_settings(settings, store)
    if llm is not None:
        import structlog

        structlog.get_logger(__name__).info("llm_enabled", model=llm.model,
                                            endpoint=settings.openai_base_url or "https://api.openai.com/v1")
    return Service(engine, store, llm=llm, first_reply=settings.first_reply)


async def _open_store(settings: Settings) -> Store:
    from bot.store import Store

    store = Store(settings.database_url)
    try:
        await store.migrate()
    except Exception as exc:  # an unreachable or unwritable database: say which, not a traceback
        await store.close()
        raise UsageError(f"cannot open the database {Store.describe(settings.database_url)}: {exc}") from None
    return store


async def _serve(engine: Engine, settings: Settings) -> int:
    """Serve Slack (and Discord) until SIGTERM or Ctrl-C."""
    import signal

    from adapters.run import serve
    from adapters.slack import SlackConfigError

    refusals: tuple[type[Exception], ...] = (SlackConfigError,)
    if settings.discord_token:  # discord.py is imported only when Discord is configured
        from adapters.discord_gateway import DiscordConfigError

        refusals += (DiscordConfigError,)

    store = await _open_store(settings)
    task = asyncio.create_task(serve(_service(engine, store, settings), settings))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        return 0
    except refusals as exc:
        raise UsageError(str(exc)) from None
    finally:
        await store.close()
    return 0


async def _playground(engine: Engine, settings: Settings, *, timezone: str | None) -> int:
    from adapters.console import Console

    store = await _open_store(settings)
    try:
        console = Console(_service(engine, store, settings), sys.stdin, sys.stdout, timezone=timezone)
        return await console.run()
    finally:
        await store.close()


class ReplayMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["customer", "agent"]
    text: str
    at: datetime | None = None


class ReplayOutcome(BaseModel):
    model_config = ConfigDict(extra="ignore")

    escalated: bool
    route: str | None = None


class ReplayConversation(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: Any = None
    messages: list[ReplayMessage] = Field(min_length=1)
    outcome: ReplayOutcome | None = None


def replay(args: argparse.Namespace) -> int:
    """Shadow mode: what Baton would have done at each turn of past conversations, and how that
    compares with what the humans did. Uses a throwaway SQLite store; sends nothing."""
    engine = _engine(args, _settings())
    with _open(args.file) as stream:
        rows = list(read_models(stream, ReplayConversation))
    return asyncio.run(_replay(engine, rows, as_json=args.json))


async def _replay(engine: Engine, rows: list[Any], *, as_json: bool) -> int:
    import tempfile

    from bot.model import Message, Person, Role
    from bot.service import Service
    from bot.store import Store

    tally = {"conversations": 0, "with_outcome": 0, "agree": 0, "missed_escalations": 0, "extra_escalations": 0,
             "same_route": 0, "different_route": 0, "bad_lines": 0}
    with tempfile.TemporaryDirectory(prefix="baton-replay-") as folder:
        store = Store(f"sqlite+aiosqlite:///{folder}/replay.db")
        await store.migrate()
        service = Service(engine, store)
        try:
            for number, convo, error, _raw in rows:
                if convo is None:
                    tally["bad_lines"] += 1
                    print(f"line {number}: skipped: {error}", file=sys.stderr)
                    continue
                tally["conversations"] += 1
                start = datetime.now(UTC)
                escalated_at: int | None = None
                route: str | None = None
                turns = []
                for index, msg in enumerate(convo.messages):
                    role = Role.customer if msg.role == "customer" else Role.staff
                    author = Person(id="customer" if role is Role.customer else "agent", role=role)
                    at = msg.at or start + timedelta(minutes=index)
                    if at.tzinfo is None:
                        at = at.replace(tzinfo=UTC)
                    outcome = await service.handle(Message(
                        platform="replay", workspace="replay", channel="replay", thread=f"{number}",
                        author=author, text=msg.text, at=at, event_id=f"{number}:{index}"))
                    decision = outcome.decision
                    turn: dict[str, Any] = {"turn": index + 1, "role": msg.role}
                    if decision is not None:
                        if decision.escalate and escalated_at is None:
                            escalated_at, route = index + 1, decision.route
                        turn.update(intent=decision.intent, escalate=decision.escalate, route=decision.route,
                                    severity=str(decision.severity), reply=decision.reply,
                                    rules=list(decision.rules), held=[h[0] for h in decision.held])
                    turns.append(turn)
                verdict: dict[str, Any] = {"escalated": escalated_at is not None, "escalated_at_turn": escalated_at,
                                           "route": route}
                if convo.outcome is not None:
                    tally["with_outcome"] += 1
                    human = convo.outcome
                    verdict["human"] = human.model_dump()
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
                _print_replay(convo.id, turns, verdict, as_json=as_json)
        finally:
            await store.close()
    if as_json:
        print(json.dumps({"summary": tally}))
    else:
        print("\nsummary: " + ", ".join(f"{k}={v}" for k, v in tally.items()))
    return 0


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
        if turn["reply"]:
            print("     would say: " + turn["reply"].replace("\n", "\n                "))
        for held in turn["held"]:
            print(f"     held by the guard: {held}")
    did = f"escalated at turn {verdict['escalated_at_turn']}" if verdict["escalated"] else "did not escalate"
    line = f"  Baton {did}"
    if "agreement" in verdict:
        line += f"; humans: {'escalated' if verdict['human']['escalated'] else 'did not'} -> {verdict['agreement']}"
    print(line)
