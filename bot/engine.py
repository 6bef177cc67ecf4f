"""The decision core: (conversation, new message) -> decision + actions. No I/O of its own.

Rules are the floor. Every escalation trigger is a deterministic rule from the policy file, and the
decision lists the id of every rule that fired, so "why was this routed here?" has a one-line answer.
Text that tries to instruct the bot ("ignore previous instructions") is only ever matched as content:
nothing in the customer's text can switch a rule off.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from bot.model import (
    Action,
    AskDetails,
    Conversation,
    ConversationState,
    Decision,
    Details,
    Message,
    MirrorToInternal,
    OpenHandoff,
    PriorContact,
    Reply,
    Severity,
    Signal,
    Tier,
)
from bot.policy import Policy
from bot.triage import classify, detect

FIELD_LABELS = {
    "meeting_name": "the meeting's name",
    "date": "the date of the meeting",
    "time": "the time it started",
    "timezone": "your time zone",
}


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _humanise(minutes: int) -> str:
    if minutes < 60:
        return f"{minutes} minutes"
    hours, rest = divmod(minutes, 60)
    unit = "hour" if hours == 1 else "hours"
    return f"{hours} {unit}" if not rest else f"{hours} {unit} {rest} minutes"


class Engine:
    """Decides what to do with one customer message. Construct once per policy; thread-safe."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    # ---- the pure decision ----

    def triage(
        self,
        text: str,
        *,
        organisation: str | None = None,
        prior: Sequence[PriorContact] = (),
        now: datetime | None = None,
        details: Details | None = None,
        floor: Severity | None = None,
    ) -> Decision:
        """Decide on ``text``; ``prior`` are the customer's earlier contacts (for repeat contact),
        ``floor`` the severity the conversation already reached (it never goes down)."""
        policy = self.policy
        signals, rules = detect(text, policy)
        intent = classify(text, signals, policy)
        rules += intent.cues

        repeat = self._repeat_contact(text, intent.intent, prior, now)
        if repeat is not None:
            signals.append(repeat)
            rules.append(repeat.rule)

        escalating = [s for s in signals if self._escalates(s)]
        intent_spec = policy.intents[intent.intent]
        escalate = bool(escalating)
        if intent_spec.tier is Tier.human:
            escalate = True
            rules.append(f"tier.{intent.intent}.human")

        severity = max((s.severity for s in escalating), default=Severity.low)
        if floor is not None and floor > severity:
            severity = floor
        customer = policy.customer_for(organisation)
        if customer is not None and escalate and customer.severity_boost:
            severity = severity.raised(customer.severity_boost)
            rules.append(f"vip.{customer.id}")
        if escalate and severity < policy.escalation.min_severity:
            severity = policy.escalation.min_severity

        route: str | None = None
        if escalate:
            route = self._route(escalating, intent_spec.route)
            rules.append(f"route.{route}")

        tier = Tier.human if escalate else intent_spec.tier
        details = details or Details()
        missing = details.missing(policy.form_fields(intent.intent))
        reply: str | None = None
        if escalate:
            reply = self.handoff_notice(severity)
        elif missing:
            reply = self.ask_for(missing)

        return Decision(
            intent=intent.intent,
            confidence=intent.confidence,
            tier=tier,
            escalate=escalate,
            route=route,
            severity=severity,
            signals=tuple(signals),
            details=details,
            missing=tuple(missing),
            reply=reply,
            rules=tuple(dict.fromkeys(rules)),
            flags=tuple(s.kind for s in signals if s.kind in policy.signals and not policy.signals[s.kind].escalate),
        )

    def decide(
        self, conversation: Conversation, message: Message, *, prior: Sequence[PriorContact] = ()
    ) -> tuple[Decision, list[Action]]:
        """The decision on a customer's new message in ``conversation``, and the actions it needs."""
        state = conversation.state
        decision = self.triage(
            message.text,
            organisation=message.author.organisation,
            prior=prior,
            now=message.at,
            details=conversation.details,
            floor=conversation.severity if state in (ConversationState.escalated, ConversationState.claimed)
            else None,
        )
        actions: list[Action] = []
        if state in (ConversationState.escalated, ConversationState.claimed):
            # A human owns (or is about to own) this conversation: the bot is silent to the
            # customer and only keeps the internal thread current.
            actions.append(MirrorToInternal(text=message.text))
            higher = conversation.severity is not None and decision.severity > conversation.severity
            if higher:
                actions.append(OpenHandoff(route=decision.route or conversation.route or "support",
                                           severity=decision.severity, reasons=decision.rules))
            return decision.model_copy(update={"reply": None}), actions
        if decision.escalate:
            assert decision.route is not None
            actions.append(OpenHandoff(route=decision.route, severity=decision.severity, reasons=decision.rules))
            if decision.reply:
                actions.append(Reply(text=decision.reply))
        elif decision.missing and decision.reply:
            actions.append(AskDetails(text=decision.reply, fields=decision.missing))
        elif decision.reply:
            actions.append(Reply(text=decision.reply, citations=decision.citations))
        return decision, actions

    # ---- parts ----

    def _escalates(self, signal: Signal) -> bool:
        spec = self.policy.signals.get(signal.kind)
        if spec is None:  # engine-made signals (repeat contact) always escalate
            return True
        return spec.escalate and signal.severity >= self.policy.escalation.min_severity

    def _route(self, escalating: list[Signal], intent_route: str) -> str:
        if not escalating:
            return intent_route
        # Signals are sorted most severe first, ties in the policy's order of signal kinds.
        top = escalating[0]
        spec = self.policy.signals.get(top.kind)
        return spec.route if spec else self.policy.repeat_contact.route

    def _repeat_contact(
        self, text: str, intent: str, prior: Sequence[PriorContact], now: datetime | None
    ) -> Signal | None:
        rule = self.policy.repeat_contact
        counted = rule.intents or [i for i in self.policy.intents if i != self.policy.default_intent]
        if not prior or intent not in counted or now is None:
            return None
        since = now - timedelta(days=rule.window_days)
        for p in prior:
            if p.intent == intent and p.started_at >= since:
                evidence = text.strip().splitlines()[0][:120] if text.strip() else text
                return Signal(kind="repeat_contact", severity=rule.severity, evidence=evidence,
                              rule=f"repeat_contact.{intent}.{rule.window_days}d")
        return None

    def handoff_notice(self, severity: Severity) -> str:
        return self.policy.notices.handoff.format(
            sla=_humanise(self.policy.sla_minutes[severity.name]),
            hours=self._hours_text(),
        )

    def ask_for(self, missing: Sequence[str]) -> str:
        return self.policy.notices.ask_details.format(fields=_join([FIELD_LABELS.get(f, f) for f in missing]))

    def _hours_text(self) -> str:
        h = self.policy.business_hours
        days = h.days
        span = f"{days[0].title()}–{days[-1].title()}" if len(days) > 1 else days[0].title()
        return f"{span} {h.start:%H:%M}–{h.end:%H:%M} {h.timezone}"
