"""Platform-free domain types.

Adapters translate platform events into :class:`Message`; the engine turns a message and its
:class:`Conversation` into a :class:`Decision` and a list of :class:`Action`. Nothing here knows
about Slack, Discord or the database.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class Severity(enum.IntEnum):
    """Ordered so that ``max()`` picks the most severe."""

    low = 1
    medium = 2
    high = 3
    critical = 4

    @classmethod
    def parse(cls, value: str | Severity) -> Severity:
        return value if isinstance(value, Severity) else cls[value]

    def raised(self, steps: int = 1) -> Severity:
        return Severity(min(int(self) + steps, int(Severity.critical)))

    def __str__(self) -> str:
        return self.name


class Tier(enum.StrEnum):
    automated = "automated"
    assisted = "assisted"
    human = "human"


class Role(enum.StrEnum):
    customer = "customer"
    staff = "staff"
    bot = "bot"


class ConversationState(enum.StrEnum):
    """The lifecycle in DESIGN.md: open -> gathering -> escalated -> claimed -> resolved."""

    open = "open"
    gathering = "gathering"
    escalated = "escalated"
    claimed = "claimed"
    resolved = "resolved"


def _storable(value: str) -> str:
    """Text every store and tokenizer takes: a lone surrogate (a JSON ``\\ud83d`` escape carries one, and
    UTF-8 cannot encode it) and NUL (PostgreSQL's text refuses it) each become U+FFFD."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


Storable = Annotated[str, AfterValidator(_storable)]
"""A platform's text as Baton keeps it (see :func:`_storable`)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Person(_Frozen):
    id: str
    name: Storable | None = None
    role: Role = Role.customer
    organisation: str | None = None
    """The customer's organisation when the platform tells it (a Slack Connect customer's team id);
    ``None`` on Discord, where customers share the company's server."""
    timezone: str | None = None
    """The person's IANA time zone when the platform knows it (a Slack profile's ``tz``)."""


class Message(_Frozen):
    """One message, normalised from any platform."""

    platform: str
    workspace: str
    channel: str
    thread: str | None
    """The platform's thread key; ``None`` for a top-level message that starts a thread."""
    author: Person
    text: Storable
    at: datetime
    event_id: str
    """The platform's own id for the event carrying this message; the inbox dedupes on it."""

    @property
    def from_customer(self) -> bool:
        return self.author.role is Role.customer


class Signal(_Frozen):
    """A risk signal with the verbatim span of the customer's text that triggered it."""

    kind: str
    severity: Severity
    evidence: str
    rule: str

    def public(self) -> dict[str, str]:
        return {"kind": self.kind, "severity": str(self.severity), "evidence": self.evidence}


class Details(BaseModel):
    """Structured details gathered for a handoff. The meeting-recorder fields are typed; fields a
    policy declares for its own forms are kept as extra string attributes."""

    model_config = ConfigDict(frozen=True, extra="allow")

    meeting_name: str | None = None
    date: str | None = None
    time: str | None = None
    timezone: str | None = None

    def missing(self, fields: list[str]) -> list[str]:
        values = self.model_dump()
        return [f for f in fields if values.get(f) in (None, "")]

    def merged(self, newer: Details) -> Details:
        """These details with every field ``newer`` has filled in taken from it."""
        values = self.model_dump()
        values.update({k: v for k, v in newer.model_dump().items() if v not in (None, "")})
        return Details(**values)


Awaiting = Literal["details", "confirm", "correction", "csat"]


class Decision(_Frozen):
    """What the engine decided about one customer message, with its reasons."""

    intent: str
    confidence: float
    tier: Tier
    escalate: bool
    route: str | None
    severity: Severity
    signals: tuple[Signal, ...] = ()
    details: Details = Details()
    missing: tuple[str, ...] = ()
    reply: str | None = None
    citations: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    """Things worth a reviewer's eye that change nothing in the policy (e.g. prompt injection)."""
    awaiting: Awaiting | None = None
    """What the bot's reply waits for: missing details, a yes/no on the details read back, a correction."""
    held: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Replies the pre-send guard stopped, each with its problems; never sent, kept for review."""
    language: str | None = None
    """The language the message is in when Baton does not answer in it ("German (de)"), for the brief."""

    def contract(self) -> dict[str, Any]:
        """The shape printed by ``python -m bot triage`` (DESIGN.md's command-line contract)."""
        return {
            "intent": self.intent,
            "confidence": round(self.confidence, 3),
            "tier": str(self.tier),
            "escalate": self.escalate,
            "route": self.route,
            "severity": str(self.severity),
            "signals": [s.public() for s in self.signals],
            "details": self.details.model_dump(),
            "missing": list(self.missing),
            "reply": self.reply,
            "citations": list(self.citations),
            "rules": list(self.rules),
        }


class Conversation(BaseModel):
    """A conversation as the engine sees it: identity, state and what was decided so far."""

    model_config = ConfigDict(extra="forbid")

    id: str
    platform: str
    workspace: str
    channel: str
    thread: str
    customer: Person
    state: ConversationState = ConversationState.open
    intent: str | None = None
    severity: Severity | None = None
    route: str | None = None
    details: Details = Details()
    claimed_by: str | None = None
    awaiting: Awaiting | None = None
    asked: tuple[str, ...] = ()
    """The fields the bot's last question asked for."""
    last_reply: str | None = None
    """The bot's previous message to the customer (the guard refuses to send it twice)."""
    started_at: datetime
    updated_at: datetime


class LoopIn(_Frozen):
    route: str
    actor: str
    at: datetime


class Handoff(_Frozen):
    """A conversation handed to people: its brief, where its internal card is, its SLA timer."""

    conversation: Conversation
    brief: dict[str, Any]
    card_channel: str | None = None
    card_ts: str | None = None
    """The internal card's message; its thread is the internal thread. ``None`` until it is posted."""
    sla_due: datetime | None = None
    sla_route: str | None = None
    resolved_by: str | None = None
    csat: int | None = None
    looped_in: tuple[LoopIn, ...] = ()
    draft: dict[str, Any] | None = None
    """The bot's latest draft answer in this conversation (``bot.store.drafts``: id, mode, text, status,
    decided_by, reason), when its intent is supervised (``draft`` or ``shadow`` mode)."""


class PriorContact(_Frozen):
    """An earlier conversation of the same customer, as the repeat-contact rule needs it."""

    conversation_id: str
    intent: str | None
    state: ConversationState
    started_at: datetime


# ---- actions: what the engine asks the runtime to do; the service writes them to the outbox ----


class Reply(_Frozen):
    kind: Literal["reply"] = "reply"
    text: str
    citations: tuple[str, ...] = ()


class AskDetails(_Frozen):
    kind: Literal["ask_details"] = "ask_details"
    text: str
    fields: tuple[str, ...]


class OpenHandoff(_Frozen):
    kind: Literal["open_handoff"] = "open_handoff"
    route: str
    severity: Severity
    reasons: tuple[str, ...]
    brief: dict[str, Any] | None = None
    """The continuity brief (``bot.handoff.Brief`` as JSON); the service attaches it before storing."""


class MirrorToInternal(_Frozen):
    kind: Literal["mirror"] = "mirror"
    text: str


class Hold(_Frozen):
    """A customer message the pre-send guard stopped: stored for review, never sent."""

    kind: Literal["hold"] = "hold"
    text: str
    problems: tuple[str, ...]


# ---- staff actions: made by the service when a person acts on a handoff ----


class StaffReply(_Frozen):
    """A staff member's message sent to the customer ("Send to customer"), under their name."""

    kind: Literal["staff_reply"] = "staff_reply"
    text: str
    author_id: str
    author_name: str | None = None


class Note(_Frozen):
    """A message in the internal handoff thread: a transcript line, a loop-in, an SLA re-ping.

    The transport renders ``route`` as a mention of that route's group and ``actor`` as a mention
    of the person, so this stays free of any platform's mention syntax."""

    kind: Literal["note"] = "note"
    text: str
    route: str | None = None
    actor: str | None = None


class CardUpdate(_Frozen):
    """Redraw the handoff card from the stored state, e.g. after a claim or a resolve."""

    kind: Literal["card"] = "card"


class ReviewItem(_Frozen):
    """A decision sampled for the QA review queue: posted to the review channel with one-click tags."""

    kind: Literal["review"] = "review"
    review_id: int
    reason: str
    """Why it was picked: auto_answer, low_confidence, hold, handoff, csat, repeat_contact."""
    text: str


class AutonomyNotice(_Frozen):
    """An intent's autonomy changed (a demotion, or a promotion Baton may make alone), or a promotion is
    proposed for a lead to confirm: told to the leads with its figures."""

    kind: Literal["autonomy"] = "autonomy"
    intent: str
    mode: str
    previous: str
    why: str
    confirmed: bool
    figures: dict[str, Any] = {}


Action = Annotated[Reply | AskDetails | OpenHandoff | MirrorToInternal | Hold | StaffReply | Note | CardUpdate
                   | ReviewItem | AutonomyNotice, Field(discriminator="kind")]
CUSTOMER_FACING = ("reply", "ask_details")
"""Actions the bot itself says to the customer (the guard has checked them)."""
TO_CUSTOMER = ("reply", "ask_details", "staff_reply")
"""Every action that posts in the customer's channel; all others stay internal."""
