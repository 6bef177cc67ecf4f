"""History in: past conversations stored with their human outcomes (``python -m bot replay FILE --record``).

A team can then read the KPIs (``python -m bot report``) and the bot's agreement with its people
(``python -m bot autonomy``) on its own past before Baton is switched on. ``replay`` runs each conversation
through the service in a throwaway store, as shadow mode would; this module reads back what the bot decided
there (:func:`learned`) and writes the conversation into the configured store as it happened
(:func:`record`): the customer's and the staff's messages with their own times, the bot's decision on every
customer message, the lifecycle the humans gave it (opened, escalated, claimed, resolved, reopened), and a
shadow draft comparing the bot's would-be answer with the human's reply. Nothing the bot "said" is stored as
a message: in history it said nothing.

A recorded conversation's key is (platform, ``history``, ``history``, its id): recording a file again stores
nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bot import autonomy
from bot.model import ConversationState, Role
from bot.store import conversations, decisions, drafts, messages, transitions

if TYPE_CHECKING:
    from bot.cli import ReplayConversation as Past
    from bot.cli import ReplayMessage as Said
    from bot.cli import ReplayOutcome as Outcome
    from bot.store import Store

PLACE = "history"
"""The workspace and channel of every recorded conversation (its thread is its id)."""
ACTOR = "history"
"""Who caused what the input does not attribute to anyone (the escalation, an unattributed resolution)."""
AGENT = "agent"
"""A staff member the input does not name."""
STEP = timedelta(minutes=1)
"""The gap before a message without a time of its own."""

Kind = Literal["customer", "escalate", "claim", "agent", "resolve"]
_ORDER: dict[Kind, int] = {"customer": 0, "escalate": 1, "claim": 2, "agent": 3, "resolve": 4}
"""At the same instant: the customer wrote, the conversation went to a person, was claimed, answered, resolved."""


def zone_of(convo: Past) -> tzinfo:
    """The zone of the input's times that carry none: the customer's, else UTC."""
    return ZoneInfo(convo.tz) if convo.tz else UTC


def aware(value: datetime, zone: tzinfo) -> datetime:
    return value.replace(tzinfo=zone) if value.tzinfo is None else value


def _utc(value: datetime, zone: tzinfo) -> datetime:
    """In UTC, as everything stored is (SQLite keeps a time's wall clock and drops its offset)."""
    return aware(value, zone).astimezone(UTC)


def moments(convo: Past, now: datetime) -> list[datetime]:
    """Each message's time: its own ``at``, else one minute after the message before it. Messages before the
    first one with a time are spaced one minute apart up to it; a conversation with no times starts ``now``."""
    zone = zone_of(convo)
    given = [aware(m.at, zone) if m.at is not None else None for m in convo.messages]
    first = next((i for i, at in enumerate(given) if at is not None), None)
    anchor = given[first] if first is not None else None
    base = now if first is None or anchor is None else anchor - first * STEP
    out: list[datetime] = []
    for at in given:
        out.append(at if at is not None else out[-1] + STEP if out else base)
    return out


def problem(convo: Past) -> str | None:
    """Why ``convo`` cannot be recorded (``None``: it can)."""
    if convo.id is None:
        return "no id (a conversation is recorded under its id, so that recording again stores nothing twice)"
    if len(str(convo.id)) > 64:
        return "id: at most 64 characters"
    if convo.customer is not None and len(convo.customer) > 64:
        return "customer: at most 64 characters"
    if not any(m.role == "customer" for m in convo.messages):
        return "no customer message"
    return None


# ---- what the bot decided, read back from the replay's throwaway store ----


@dataclass(frozen=True)
class Answer:
    """An answer the bot would have sent on its own (or, in draft or shadow mode, proposed)."""

    text: str
    citations: tuple[str, ...]
    intent: str
    route: str | None


@dataclass(frozen=True)
class Turn:
    """The bot's decision on one customer message (a ``decisions`` row of the throwaway store)."""

    decision: dict[str, Any]
    answer: Answer | None


def event_id(key: str, index: int) -> str:
    """The event id of message ``index`` of the conversation keyed ``key`` (in the replay and the record)."""
    return f"{key}:{index}"


def _index(event: str | None) -> int | None:
    head, _, tail = (event or "").rpartition(":")
    return int(tail) if head and tail.isdigit() else None


async def learned(replayed: Store, platform: str, workspace: str, channel: str, thread: str) -> dict[int, Turn]:
    """Per customer message (by its index in the input), what the bot decided in the replay of the thread,
    and the answer it would have given: a help-center answer it sent, or the one its autonomy mode kept as a
    draft (in ``draft`` or ``shadow`` mode, the decision became a handoff and the answer a draft)."""
    conversation = await replayed.find_conversation(platform, workspace, channel, thread)
    if conversation is None:
        return {}
    d = decisions.c
    async with replayed.transaction() as conn:
        rows = (await conn.execute(
            sa.select(d.intent, d.escalate, d.severity, d.route, d.rules, d.inputs, d.output, d.policy_version,
                      messages.c.event_id)
            .select_from(decisions.join(messages, d.message_id == messages.c.id))
            .where(d.conversation_id == conversation.id).order_by(d.id))).mappings().all()
        kept = (await conn.execute(sa.select(drafts.c.text, drafts.c.citations, drafts.c.intent, drafts.c.route)
                                   .where(drafts.c.conversation_id == conversation.id)
                                   .order_by(drafts.c.id))).all()
    supervised = iter(kept)
    out: dict[int, Turn] = {}
    for row in rows:
        decision = {k: v for k, v in row.items() if k != "event_id"}
        answer = None
        output = decision["output"] or {}
        if any(str(rule).startswith("autonomy.") for rule in decision["rules"] or ()):
            draft = next(supervised, None)  # the service keeps one draft per supervised decision, in order
            if draft is not None:
                answer = Answer(draft.text, tuple(draft.citations or ()), draft.intent, draft.route)
        elif output.get("citations") and output.get("reply") and not decision["escalate"]:
            answer = Answer(output["reply"], tuple(output["citations"]), decision["intent"], decision["route"])
        index = _index(row["event_id"])
        if index is not None:
            out[index] = Turn(decision=decision, answer=answer)
    return out


# ---- the lifecycle the humans gave it ----


@dataclass(frozen=True)
class Move:
    """One row of ``transitions``."""

    from_state: str | None
    to_state: str
    cause: str
    actor: str
    at: datetime


@dataclass(frozen=True)
class Life:
    moves: list[Move]
    state: str
    claimed_by: str | None


def lifecycle(convo: Past, times: Sequence[datetime], customer_id: str) -> Life:
    """The transitions of the conversation, in time order: ``open`` at the first customer message; ``escalated``
    (once, by ``history``) at the outcome's ``escalated_at``, else at the first staff reply or claim, whichever
    came first, else (an escalation nobody answered) at the last customer message before it was resolved;
    ``claimed`` at ``claimed_at`` or at the first staff reply of each episode (a reply in the thread takes the
    conversation over, as it does live); ``resolved`` at each resolution; back to ``open`` when the customer
    writes after one (a reopening)."""
    human = convo.outcome
    zone = zone_of(convo)
    said = list(convo.messages)
    times = [t.astimezone(UTC) for t in times]
    customer_at = [t for m, t in zip(said, times, strict=True) if m.role == "customer"]
    agents = [(m, t) for m, t in zip(said, times, strict=True) if m.role == "agent"]
    resolutions = sorted(_utc(t, zone) for t in human.resolutions) if human else []
    claimed_at = _utc(human.claimed_at, zone) if human and human.claimed_at else None
    first_customer = min(customer_at)

    escalated_at = _utc(human.escalated_at, zone) if human and human.escalated_at else None
    if escalated_at is None:
        reached = [t for t in (agents[0][1] if agents else None, claimed_at) if t is not None]
        if reached:
            escalated_at = min(reached)
        elif human is not None and human.escalated:
            before = [t for t in customer_at if not resolutions or t <= resolutions[0]] or customer_at
            escalated_at = max(before)
    events: list[tuple[datetime, Kind, Said | None]] = [(t, "customer", None) for t in customer_at]
    events += [(t, "agent", m) for m, t in agents]
    if escalated_at is not None:
        events.append((max(escalated_at, first_customer), "escalate", None))
    if claimed_at is not None:
        events.append((max(claimed_at, first_customer), "claim", None))
    events += [(t, "resolve", None) for t in resolutions]
    events.sort(key=lambda e: (e[0], _ORDER[e[1]]))

    moves: list[Move] = []
    state: str | None = None
    claimed: str | None = None
    escalated = False

    def move(to: ConversationState, at: datetime, cause: str, actor: str) -> None:
        nonlocal state
        moves.append(Move(state, to.value, cause[:256], actor[:64], at))
        state = to.value

    named_agent = next((m.author for m, _ in agents if m.author), None)
    for at, kind, message in events:
        if kind == "customer":
            if state is None:
                move(ConversationState.open, at, "first customer message", customer_id)
            elif state == ConversationState.resolved:
                move(ConversationState.open, at, "customer wrote again", customer_id)
                claimed = None
        elif state is None:
            continue  # nothing before the customer's first message
        elif kind == "escalate":
            if not escalated and state == ConversationState.open:
                route = human.route if human else None
                move(ConversationState.escalated, at, f"escalated: history{f' (to {route})' if route else ''}", ACTOR)
                escalated = True
        elif kind in ("claim", "agent"):
            if state in (ConversationState.open, ConversationState.escalated):
                if kind == "claim":
                    who = (human.claimed_by if human else None) or named_agent or AGENT
                else:
                    who = (message.author if message else None) or (human.claimed_by if human else None) or AGENT
                move(ConversationState.claimed, at, "claimed", who)
                claimed = who[:64]
        elif kind == "resolve" and state != ConversationState.resolved:
            move(ConversationState.resolved, at, "resolved", (human.resolved_by if human else None) or ACTOR)
    assert state is not None  # the first customer message opened it
    return Life(moves=moves, state=state, claimed_by=claimed)


# ---- writing it ----


def _insert(conn: Any, table: sa.Table) -> Any:
    return (postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


def customer_of(convo: Past) -> str:
    """The recorded conversation's customer: its ``customer``, else one of its own."""
    return convo.customer or f"{PLACE}:{convo.id}"[:64]


async def record(store: Store, convo: Past, times: Sequence[datetime], turns: dict[int, Turn]) -> int | None:
    """Store ``convo`` as it happened (``times``: each message's, from :func:`moments`; ``turns``: the bot's
    decisions, from :func:`learned`), in one transaction. Returns how many messages were stored, or ``None``
    when the conversation was recorded before (nothing is then written)."""
    thread = str(convo.id)
    times = [t.astimezone(UTC) for t in times]
    customer_id = customer_of(convo)
    said = list(convo.messages)
    human = convo.outcome
    life = lifecycle(convo, times, customer_id)
    first_turn = next((turns[i] for i, m in enumerate(said) if m.role == "customer" and i in turns), None)
    last_turn = next((turns[i] for i in range(len(said) - 1, -1, -1) if i in turns), None)
    first_customer = next(m for m in said if m.role == "customer")
    updated = max([*times, *(m.at for m in life.moves)])
    resolved = life.state == ConversationState.resolved
    async with store.transaction() as conn:
        created = (await conn.execute(_insert(conn, conversations).values(
            id=_new_id(), platform=convo.platform, workspace=PLACE, channel=PLACE, thread=thread,
            customer_id=customer_id, customer_name=first_customer.author, organisation=convo.organisation,
            state=life.state,
            intent=first_turn.decision["intent"] if first_turn else None,
            severity=first_turn.decision["severity"] if first_turn else None,
            route=first_turn.decision["route"] if first_turn else None,
            details=((last_turn.decision["output"] or {}).get("details") or {}) if last_turn else {},
            claimed_by=life.claimed_by, customer_timezone=convo.tz, asked=[],
            resolved_by=((human.resolved_by if human else None) or ACTOR) if resolved else None,
            csat=human.csat if human else None, started_at=min(times), updated_at=updated,
        ).on_conflict_do_nothing().returning(conversations.c.id))).scalar_one_or_none()
        if created is None:
            return None
        ids: dict[int, int] = {}
        for index, (message, at) in enumerate(zip(said, times, strict=True)):
            staff = message.role == "agent"
            author = (message.author or (human.claimed_by if human else None) or AGENT) if staff else customer_id
            ids[index] = (await conn.execute(messages.insert().values(
                conversation_id=created, role=(Role.staff if staff else Role.customer).value,
                author_id=author[:64], author_name=message.author, text=message.text,
                event_id=event_id(f"{PLACE}:{thread}", index), at=at).returning(messages.c.id))).scalar_one()
        for index, turn in sorted(turns.items()):
            if index not in ids:
                continue
            inputs = {**(turn.decision["inputs"] or {}), "event_id": event_id(f"{PLACE}:{thread}", index)}
            await conn.execute(decisions.insert().values(
                conversation_id=created, message_id=ids[index], intent=turn.decision["intent"],
                escalate=turn.decision["escalate"], severity=turn.decision["severity"], route=turn.decision["route"],
                rules=list(turn.decision["rules"] or []), inputs=inputs, output=turn.decision["output"],
                policy_version=turn.decision["policy_version"], at=times[index]))
        for m in life.moves:
            await conn.execute(transitions.insert().values(
                conversation_id=created, from_state=m.from_state, to_state=m.to_state, cause=m.cause, actor=m.actor,
                at=m.at))
        shadow = _shadow(said, times, turns, human)
        if shadow is not None:
            await conn.execute(drafts.insert().values(
                conversation_id=created, final_route=first_turn.decision["route"] if first_turn else None, **shadow))
    return len(said)


def _shadow(said: Sequence[Said], times: Sequence[datetime], turns: dict[int, Turn],
            human: Outcome | None) -> dict[str, Any] | None:
    """The shadow draft: the bot's last answer before the first staff reply, set against that reply."""
    reply = next((i for i, m in enumerate(said) if m.role == "agent"), None)
    if reply is None:
        return None
    asked = next((i for i in range(reply - 1, -1, -1) if i in turns and turns[i].answer is not None), None)
    if asked is None:
        return None
    answer = turns[asked].answer
    assert answer is not None
    staff = said[reply]
    return {"intent": answer.intent, "mode": "shadow", "route": answer.route, "text": answer.text,
            "citations": list(answer.citations), "status": "answered", "created_at": times[asked],
            "decided_by": (staff.author or (human.claimed_by if human else None) or AGENT)[:64],
            "decided_at": times[reply], "final_text": staff.text,
            "edit_ratio": autonomy.edit_ratio(answer.text, staff.text)}


def _new_id() -> str:
    import uuid

    return str(uuid.uuid4())
