"""The commands behind ``python -m bot``. Each takes the parsed arguments and returns an exit code."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, field_validator

from bot.engine import Engine
from bot.evaluation import CALM, LabelledRow, Report
from bot.jsonl import open_input, read_models
from bot.knowledge import KnowledgeBase, KnowledgeError
from bot.policy import Policy, PolicyError, load_policy, zone
from bot.settings import Settings


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
    engine = _engine(args, _settings(), knowledge=False)
    report = Report()
    misses: dict[str, list[str]] = {}
    errors = 0
    with _open(args.file) as stream:
        for _number, row, error, _raw in read_models(stream, LabelledRow):
            if row is None:
                print(error, file=sys.stderr)
                errors += 1
                continue
            decision = engine.triage(row.text)
            report.add(row, decision)
            wrong = decision.escalate if row.category in CALM else not decision.escalate
            if args.misses and wrong and len(misses.setdefault(row.category, [])) < args.misses:
                why = ",".join(decision.rules) if decision.escalate else "-"
                misses[row.category].append(f"  {row.id} [{row.source}] {row.text!r} -> {why}")
    if args.json:
        print(json.dumps({**report.as_dict(), "errors": errors}))
    else:
        for line in report.lines():
            print(line)
        for category, rows in sorted(misses.items()):
            print(f"\nwrong in {category}:")
            print("\n".join(rows))
    return 0 if not errors else 1


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
    _policy(args, settings)  # fail fast on a bad policy
    if settings.slack_bot_token or settings.discord_token:
        raise UsageError("the Slack and Discord adapters are not built yet (issues #4 and #5); "
                         "unset SLACK_BOT_TOKEN / DISCORD_TOKEN, or try `python -m bot triage examples/messages.jsonl`")
    raise UsageError("the terminal playground is not built yet (issue #3); meanwhile "
                     "`python -m bot triage examples/messages.jsonl` shows what Baton decides for each message")
