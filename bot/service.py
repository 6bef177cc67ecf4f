"""The runtime core: inbox (dedupe) -> engine -> store and outbox. Adapters call :meth:`Service.handle`.

Delivery of the outbox (with retries and rate limits) belongs to the platform adapters; here every
action is written, in the same transaction as the decision that made it, before anything is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from bot.engine import Engine
from bot.handoff import Brief, Line, build_brief
from bot.model import Action, Conversation, ConversationState, Decision, Message, Role
from bot.store import Store

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What happened to one incoming message."""

    duplicate: bool = False
    conversation: Conversation | None = None
    decision: Decision | None = None
    actions: list[Action] = field(default_factory=list)
    brief: Brief | None = None
    """The continuity brief, when this message opened (or raised) a handoff."""
    state: ConversationState | None = None
    """The conversation's state after this message (``conversation`` is as it was before)."""


class Service:
    def __init__(self, engine: Engine, store: Store) -> None:
        self.engine = engine
        self.store = store

    async def handle(self, message: Message) -> Outcome:
        bound = log.bind(event_id=message.event_id, platform=message.platform)
        if not await self.store.record_event(message.platform, message.event_id):
            bound.info("duplicate_event_dropped")
            return Outcome(duplicate=True)

        conversation, created = await self.store.conversation_for(message)
        if conversation.state is ConversationState.resolved and message.from_customer:
            # A new customer message after "resolved" reopens the conversation.
            await self.store.transition(conversation.id, ConversationState.open, cause="customer wrote again",
                                        actor=message.author.id)
            conversation = conversation.model_copy(update={"state": ConversationState.open})
        bound = bound.bind(conversation_id=conversation.id)

        if message.author.role is not Role.customer:
            await self.store.record_message(conversation.id, message)
            # A member of the company replying in the customer's thread has taken over.
            if message.author.role is Role.staff and conversation.state is not ConversationState.claimed:
                won, _owner = await self.store.claim(conversation.id, message.author.id)
                bound.info("staff_took_over", staff=message.author.id, won=won)
            return Outcome(conversation=conversation)

        window = timedelta(days=self.engine.policy.repeat_contact.window_days)
        prior = await self.store.prior_contacts(message.platform, message.author.id,
                                                since=message.at - window, exclude=conversation.id)
        decision, actions = self.engine.decide(conversation, message, prior=prior)
        state = await self.store.save_turn(conversation, message, decision, actions,
                                           policy_version=self.engine.policy.meta.version)
        bound.info("decided", intent=decision.intent, escalate=decision.escalate, severity=str(decision.severity),
                   route=decision.route, rules=list(decision.rules), created=created)
        for action in actions:
            if action.kind == "hold":
                bound.warning("reply_held_by_guard", problems=list(action.problems))
        brief = None
        if any(a.kind == "open_handoff" for a in actions):
            brief = await self.brief(conversation, decision, opened_at=message.at)
        return Outcome(conversation=conversation, decision=decision, actions=actions, brief=brief, state=state)

    async def brief(self, conversation: Conversation, decision: Decision, *, opened_at: datetime) -> Brief:
        lines = [Line(role=Role(r["role"]), author=r["author_name"] or r["author_id"], text=r["text"], at=r["at"])
                 for r in await self.store.transcript(conversation.id)]
        return build_brief(self.engine.policy, conversation, decision, lines, opened_at=opened_at)
