"""Baton's App Home in Slack: each staff member's own page, drawn afresh whenever they open it.

It shows the conversations they claimed that are not resolved (customer, intent, severity, since when, a
link to the handoff card), the bot's drafts waiting for a person's approval, and, for leads (the user ids
in ``BATON_LEADS``), what each intent has earned: its mode, the figures over its review window and the
promotion they call for (see :mod:`bot.autonomy`). Someone from outside the installing workspace (a
Slack Connect customer can open the app's profile too) is told the Home is for the support team only.

Nothing here changes anything: it reads the store and publishes a view (``views.publish``, no scope).
Customer-derived text goes through :func:`adapters.slack_blocks.escape`.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import structlog
from aiohttp import ClientError
from pydantic import BaseModel, ConfigDict, ValidationError
from slack_sdk.errors import SlackApiError

from adapters import slack_blocks as blocks
from adapters import slack_payloads as payloads
from bot import autonomy
from bot.model import Role
from bot.store import Store

if TYPE_CHECKING:
    from adapters.slack import SlackAdapter

log = structlog.get_logger(__name__)

HOME_CALLBACK = "baton_home"
STAFF_ONLY = "Baton's Home is for the support team only."
UNKNOWN = "Baton could not check who you are just now. Open the Home tab again in a moment."
MAX_ROWS = 20
"""Conversations and drafts shown per section (a Home view holds at most 100 blocks)."""
MAX_INTENTS = 40
FIRST_LINE = 200
"""Characters of a draft's first line shown."""
_SEVERITY_MARK = {"critical": ":red_circle:", "high": ":large_orange_circle:", "medium": ":large_yellow_circle:",
                  "low": ":white_circle:"}
_registered: weakref.WeakSet[SlackAdapter] = weakref.WeakSet()


class HomeOpened(BaseModel):
    """An ``app_home_opened`` event: who opened which tab. (Could move to ``adapters/slack_payloads.py``.)"""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["app_home_opened"]
    user: str
    tab: str | None = None


def leads(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """The Slack user ids of the support leads (``BATON_LEADS``, comma-separated): they also see autonomy."""
    raw = (os.environ if environ is None else environ).get("BATON_LEADS", "")
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


# ---- what the Home reads ----


@dataclass(frozen=True)
class Claimed:
    conversation_id: str
    customer: str
    organisation: str | None
    intent: str | None
    severity: str | None
    since: datetime
    card_channel: str | None
    card_ts: str | None


@dataclass(frozen=True)
class Waiting:
    conversation_id: str
    customer: str
    intent: str
    text: str
    created_at: datetime
    claimed_by: str | None
    card_channel: str | None
    card_ts: str | None


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def claimed_by(store: Store, user_id: str, *, limit: int = MAX_ROWS) -> tuple[list[Claimed], int]:
    """The conversations ``user_id`` claimed that are not resolved, longest held first (at most ``limit``),
    and how many there are in all."""
    rows, total = await store.claimed_by(user_id, limit=limit)
    return [Claimed(conversation_id=r["id"], customer=r["customer_name"] or r["customer_id"],
                    organisation=r["organisation"], intent=r["intent"], severity=r["severity"],
                    since=_utc(_stamp(r["since"])), card_channel=r["card_channel"], card_ts=r["card_ts"])
            for r in rows], total


async def pending_drafts(store: Store, *, limit: int = MAX_ROWS) -> tuple[list[Waiting], int]:
    """The drafts waiting for a person's approval in conversations that are not resolved, the longest
    waiting first (at most ``limit``), and how many in all."""
    rows, total = await store.waiting_drafts(limit=limit)
    return [Waiting(conversation_id=r["conversation_id"], customer=r["customer_name"] or r["customer_id"],
                    intent=r["intent"], text=r["text"], created_at=_utc(r["created_at"]),
                    claimed_by=r["claimed_by"], card_channel=r["card_channel"], card_ts=r["card_ts"])
            for r in rows], total


def _stamp(value: Any) -> datetime:
    """A timestamp from an expression SQLite may hand back as text (``coalesce`` of two columns)."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


# ---- the view ----


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": text[:150]}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [blocks._mrkdwn(text)]}


def _card_link(permalink: str | None) -> str:
    return f"<{permalink}|open the card>" if permalink else "card not posted yet"


def _first_line(text: str) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= FIRST_LINE else line[:FIRST_LINE - 1].rstrip() + "\u2026"


def _more(shown: int, total: int, what: str) -> list[dict[str, Any]]:
    return [_context(f"and {total - shown} more {what}: see the handoff channel")] if total > shown else []


def staff_only_view() -> dict[str, Any]:
    return {"type": "home", "callback_id": HOME_CALLBACK, "blocks": [
        _header("Baton"), blocks._section(STAFF_ONLY)]}


def home_view(user_id: str, claimed: Sequence[Claimed], claimed_total: int, waiting: Sequence[Waiting],
              waiting_total: int, permalinks: Mapping[str, str | None], *,
              earned: Sequence[dict[str, Any]] | None = None, window: int = 0, min_sample: int = 0,
              now: datetime | None = None) -> dict[str, Any]:
    """The Home of staff member ``user_id``; ``earned`` (leads only): one row per intent (see :func:`_earned`)."""
    out: list[dict[str, Any]] = [_header("Your claimed conversations")]
    for item in claimed:
        who = blocks.escape(item.customer) + (f" ({blocks.escape(item.organisation)})" if item.organisation else "")
        severity = item.severity or "-"
        out.append(blocks._section(
            f"*{who}* · {blocks.escape(item.intent or 'no intent yet')} · "
            f"{_SEVERITY_MARK.get(severity, '')} {severity}\n"
            f"claimed since {blocks._when(item.since)} · {_card_link(permalinks.get(item.conversation_id))}"))
    if not claimed:
        out.append(_context("Nothing claimed by you is open."))
    out += _more(len(claimed), claimed_total, "claimed by you")
    out += [{"type": "divider"}, _header("Drafts waiting for approval")]
    for draft in waiting:
        owner = f" · claimed by {blocks.mention(draft.claimed_by)}" if draft.claimed_by else ""
        out.append(blocks._section(
            f"*{blocks.escape(draft.customer)}* · {blocks.escape(draft.intent)} · waiting since "
            f"{blocks._when(draft.created_at)}{owner}\n>{blocks.escape(_first_line(draft.text))}\n"
            f"{_card_link(permalinks.get(draft.conversation_id))}"))
    if not waiting:
        out.append(_context("No draft is waiting for approval."))
    out += _more(len(waiting), waiting_total, "drafts")
    if earned is not None:
        out += [{"type": "divider"}, _header("Autonomy per intent"),
                _context(f"Over each intent's last {window} reviewed drafts; a change needs at least {min_sample}.")]
        for row in earned[:MAX_INTENTS]:
            line = (f"*{blocks.escape(row['intent'])}* · *{row['mode']}*"
                    + (f" (at most {row['ceiling']})" if row["ceiling"] != "auto" else "")
                    + f"\nsample {row['sample']} · approved unedited {row['approved_unedited']:.0%} · mean edit ratio "
                    f"{row['mean_edit_ratio']:.2f} · rejected {row['rejected']:.0%}")
            if row["harmful"]:
                line += f" · harmful {row['harmful']}"
            if row["proposed"]:
                line += (f"\n:arrow_up: *promotion proposed: {row['mode']} \u2192 {row['proposed']}* "
                         f"({blocks.escape(row['why'])}); confirm with "
                         f"`python -m bot autonomy --promote {row['intent']}`")
            out.append(blocks._section(line))
    out.append(_context(f"Updated {blocks._when(now or datetime.now(UTC))} for {blocks.mention(user_id)}."))
    return {"type": "home", "callback_id": HOME_CALLBACK, "blocks": out}


async def _earned(store: Store, adapter: SlackAdapter) -> list[dict[str, Any]]:
    """Per intent: its mode and ceiling, the figures over its window, and a promotion they call for."""
    return [{"intent": intent, **row} for intent, row in (await autonomy.table(store, adapter.service.policy)).items()]


async def _permalink(adapter: SlackAdapter, channel: str | None, ts: str | None) -> str | None:
    """The handoff card's permalink, from the adapter's lookup (once per card)."""
    return await adapter._link(channel, ts) if channel and ts else None


async def publish_home(adapter: SlackAdapter, user_id: str) -> None:
    """Draw ``user_id``'s Home from the store and publish it (``views.publish``). Staff are proven as on
    the cards: their own workspace is the installing one (``users.info``, through the adapter's cache)."""
    person = await adapter._person(user_id, None, None)
    if person.role is Role.staff:
        store = adapter.service.store
        claimed, claimed_total = await claimed_by(store, user_id)
        waiting, waiting_total = await pending_drafts(store)
        places = {c.conversation_id: (c.card_channel, c.card_ts) for c in claimed}
        places.update({w.conversation_id: (w.card_channel, w.card_ts) for w in waiting})
        links = await asyncio.gather(*(_permalink(adapter, channel, ts) for channel, ts in places.values()))
        permalinks = dict(zip(places, links, strict=True))
        policy = adapter.service.policy
        is_lead = user_id in leads()
        view = home_view(user_id, claimed, claimed_total, waiting, waiting_total, permalinks,
                         earned=await _earned(store, adapter) if is_lead else None,
                         window=policy.autonomy.window, min_sample=policy.autonomy.min_sample)
    elif person.organisation is None:  # users.info failed: who this is is unknown, so nothing is shown
        log.warning("home_user_unknown", user=user_id)
        view = {"type": "home", "callback_id": HOME_CALLBACK, "blocks": [blocks._section(UNKNOWN)]}
    else:
        log.info("home_refused", user=user_id, team=person.organisation, reason="not a member of the installing "
                 "workspace")
        view = staff_only_view()
    try:
        await adapter.client.views_publish(user_id=user_id, view=view)
    except (SlackApiError, ClientError, TimeoutError) as exc:
        log.warning("home_publish_failed", user=user_id, error=f"{type(exc).__name__}: {exc}"[:300])


def register(adapter: SlackAdapter) -> None:
    """Publish the Home whenever someone opens its tab (the ``app_home_opened`` event). Once per adapter:
    registering again changes nothing."""
    if adapter in _registered:
        return
    _registered.add(adapter)

    async def on_home_opened(body: dict[str, Any]) -> None:
        envelope = body.get("event_id") if isinstance(body.get("event_id"), str) else None
        try:
            try:
                opened = HomeOpened.model_validate(body.get("event"))
            except ValidationError as exc:
                log.warning("slack_event_rejected", kind="app_home_opened", reason=payloads.reason(exc))
                return
            if opened.tab not in (None, "home"):  # the Messages tab: nothing to draw
                return
            await publish_home(adapter, opened.user)
        finally:
            await adapter.tracker.done(envelope)

    adapter.app.event("app_home_opened")(on_home_opened)
