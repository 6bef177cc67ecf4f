"""The decision core: (conversation, new message) -> decision + actions. No I/O of its own.

Rules are the floor. Every escalation trigger is a deterministic rule from the policy file, and the
decision lists the id of every rule that fired, so "why was this routed here?" has a one-line answer.
Text that tries to instruct the bot ("ignore previous instructions") is only ever matched as content:
nothing in the customer's text can switch a rule off.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from bot.details import DetailExtractor
from bot.guard import Guard
from bot.knowledge import Grounded, KnowledgeBase
from bot.model import (
    Action,
    AskDetails,
    Awaiting,
    Conversation,
    ConversationState,
    Decision,
    Details,
    Hold,
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

_YES = re.compile(r"^\W*(?:yes|yeah|yep|yup|y|correct|right|exactly|sure|confirmed?|that.?s (?:right|correct|it)|"
                  r"looks (?:good|right)|all good|perfect|affirmative|👍|✅)\b", re.I)
_NO = re.compile(r"^\W*(?:no|nope|nah|not (?:quite|really|right)|wrong|incorrect|actually)\b", re.I)
_QUESTION = re.compile(r"\?|^\s*(?:how|what|when|where|which|why|who|can|could|does|do|is|are|will|would)\b", re.I)

def _join(items: Sequence[str], last: str = " and ") -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + last + items[-1]


def _humanise(minutes: int) -> str:
    if minutes < 60:
        return f"{minutes} minutes"
    hours, rest = divmod(minutes, 60)
    unit = "hour" if hours == 1 else "hours"
    return f"{hours} {unit}" if not rest else f"{hours} {unit} {rest} minutes"


class Engine:
    """Decides what to do with one customer message. Construct once per policy; thread-safe."""

    def __init__(self, policy: Policy, knowledge: KnowledgeBase | None = None) -> None:
        self.policy = policy
        self.knowledge = knowledge
        self.extractor = DetailExtractor(policy)
        self.guard = Guard(policy, knowledge.urls if knowledge is not None else ())

    # ---- the pure decision ----

    def triage(
        self,
        text: str,
        *,
        organisation: str | None = None,
        prior: Sequence[PriorContact] = (),
        now: datetime | None = None,
        zone: str | None = None,
        details: Details | None = None,
        floor: Severity | None = None,
        intent: str | None = None,
        asked: tuple[str, ...] = (),
        customer_name: str | None = None,
        previous: str | None = None,
        guard: bool = True,
        extra: Sequence[Signal] = (),
        grounded: Grounded | None = None,
    ) -> Decision:
        """Decide on ``text``.

        ``prior`` are the customer's earlier contacts (for repeat contact); ``zone`` the customer's
        time zone when known; ``details`` what was gathered so far; ``floor`` the severity the
        conversation already reached (it never goes down); ``intent`` the conversation's intent while
        a form is being filled in; ``asked`` the fields the bot's last question asked for;
        ``customer_name`` and ``previous`` (the bot's last message) are for the pre-send guard, which
        ``guard=False`` leaves to the caller. ``extra`` are signals from a second opinion (the
        language model): they are added to what the rules found, never in place of it. ``grounded``
        is an answer written from the help center's passages, used instead of the engine's own.
        """
        policy = self.policy
        signals, rules = detect(text, policy)
        for signal in extra:
            if signal.kind in policy.signals and not any(s.kind == signal.kind and s.severity >= signal.severity
                                                         for s in signals):
                signals.append(signal)
                rules.append(signal.rule)
        order = list(policy.signals)
        signals.sort(key=lambda s: (-s.severity, order.index(s.kind) if s.kind in order else len(order)))
        result = classify(text, signals, policy)
        rules += result.cues
        intent_name, confidence = result.intent, result.confidence
        if intent and policy.form_of(intent) and policy.intents[intent_name].tier is not Tier.human:
            intent_name = intent  # an answer to the bot's question belongs to the form being filled in

        repeat = self._repeat_contact(text, intent_name, prior, now)
        if repeat is not None:
            signals.append(repeat)
            rules.append(repeat.rule)

        escalating = [s for s in signals if self._escalates(s)]
        intent_spec = policy.intents[intent_name]
        escalate = bool(escalating)
        if intent_spec.tier is Tier.human:
            escalate = True
            rules.append(f"tier.{intent_name}.human")

        severity = max((s.severity for s in escalating), default=Severity.low)
        if floor is not None and floor > severity:
            severity = floor

        # Details: read what this message gives, keep what earlier ones gave.
        fields = policy.form_fields(intent_name)
        details = details or Details()
        if fields:
            moment = now or datetime.now(UTC)
            found = self.extractor.extract(text, fields, now=moment, asked=asked,
                                           default_zone=zone or policy.business_hours.timezone)
            details = details.merged(found.details)
            if zone and "timezone" in fields and not details.timezone:
                details = details.merged(Details(timezone=zone))
        missing = details.missing(fields)

        reply: str | None = None
        citations: tuple[str, ...] = ()
        awaiting: Awaiting | None = None
        if not escalate and intent_spec.answers and grounded is not None:
            first = grounded.articles[0]
            reply = policy.notices.answer.format(passage=grounded.text, title=first.title, url=first.url)
            citations = tuple(a.url for a in grounded.articles)
            rules += ["llm.answer", *(f"knowledge.{a.id}" for a in grounded.articles)]
        elif not escalate and intent_spec.answers and self.knowledge is not None:
            answer = self.knowledge.answer(text)
            if answer is not None:
                reply = policy.notices.answer.format(passage=answer.text, title=answer.article.title,
                                                     url=answer.article.url)
                citations = (answer.article.url,)
                rules.append(f"knowledge.{answer.article.id}")
                confidence = min(confidence, answer.confidence) if intent_name == policy.default_intent \
                    else confidence
            elif intent_name != policy.default_intent or _QUESTION.search(text):
                escalate = True
                rules.append("knowledge.no_answer")
        if not escalate and fields and not missing:
            form = policy.form_of(intent_name)
            assert form is not None
            if form.confirm:
                reply = self.confirm(details, fields)
                awaiting = "confirm"
            else:
                escalate = True
                rules.append(f"form.{intent_spec.form}.complete")

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

        if escalate:
            reply = self.no_answer(severity) if "knowledge.no_answer" in rules else self.handoff_notice(severity)
            citations = ()
            awaiting = None
        elif missing:
            reply = self.ask_for(missing)
            awaiting = "details"

        decision = Decision(
            intent=intent_name,
            confidence=confidence,
            tier=Tier.human if escalate else intent_spec.tier,
            escalate=escalate,
            route=route,
            severity=severity,
            signals=tuple(signals),
            details=details,
            missing=tuple(missing),
            reply=reply,
            citations=citations,
            rules=tuple(dict.fromkeys(rules)),
            flags=tuple(s.kind for s in signals if s.kind in policy.signals and not policy.signals[s.kind].escalate),
            awaiting=awaiting,
        )
        return self._guarded(decision, customer_name=customer_name, previous=previous) if guard else decision

    def decide(
        self, conversation: Conversation, message: Message, *, prior: Sequence[PriorContact] = (),
        extra: Sequence[Signal] = (), grounded: Grounded | None = None,
    ) -> tuple[Decision, list[Action]]:
        """The decision on a customer's new message in ``conversation``, and the actions it needs
        (``extra`` and ``grounded``: the language model's second opinion, see :meth:`triage`)."""
        state = conversation.state
        owned = state in (ConversationState.escalated, ConversationState.claimed)
        form_intent = conversation.intent if state is ConversationState.gathering else None
        decision = self.triage(
            message.text,
            organisation=message.author.organisation,
            prior=prior,
            now=message.at,
            zone=message.author.timezone or conversation.customer.timezone,
            details=conversation.details,
            floor=conversation.severity if owned else None,
            intent=form_intent,
            asked=conversation.asked if conversation.awaiting == "details" else (),
            guard=False,
            extra=extra,
            grounded=grounded,
        )
        actions: list[Action] = []
        if owned:
            # A human owns (or is about to own) this conversation: the bot is silent to the
            # customer and only keeps the internal thread current.
            actions.append(MirrorToInternal(text=message.text))
            higher = conversation.severity is not None and decision.severity > conversation.severity
            if higher:
                actions.append(OpenHandoff(route=decision.route or conversation.route or "support",
                                           severity=decision.severity, reasons=decision.rules))
            return decision.model_copy(update={"reply": None, "citations": (), "awaiting": None}), actions

        if conversation.awaiting in ("confirm", "correction") and not decision.escalate:
            decision = self._after_confirmation(conversation, message, decision)
        decision = self._guarded(decision, customer_name=conversation.customer.name, previous=conversation.last_reply)

        if decision.escalate:
            assert decision.route is not None
            actions.append(OpenHandoff(route=decision.route, severity=decision.severity, reasons=decision.rules))
        if decision.reply:
            if decision.awaiting == "details":
                actions.append(AskDetails(text=decision.reply, fields=decision.missing))
            else:
                actions.append(Reply(text=decision.reply, citations=decision.citations))
        for problem in decision.held:
            actions.append(Hold(text=problem[0], problems=problem[1]))
        return decision, actions

    def _after_confirmation(self, conversation: Conversation, message: Message, decision: Decision) -> Decision:
        """The customer's answer to "…: is that right?" (or to "which part should I correct?")."""
        fields = self.policy.form_fields(decision.intent)
        changed = decision.details != conversation.details
        if decision.missing or changed or not fields:
            return decision  # new or corrected values: the decision already reads them back again
        if conversation.awaiting == "confirm" and _YES.search(message.text):
            form = self.policy.intents[decision.intent].form
            severity = max(decision.severity, self.policy.escalation.min_severity)
            route = self.policy.intents[decision.intent].route
            rules = (*decision.rules, f"form.{form}.confirmed", f"route.{route}")
            return decision.model_copy(update={
                "escalate": True, "tier": Tier.human, "route": route, "severity": severity, "rules": rules,
                "reply": self.handoff_notice(severity), "awaiting": None})
        if _NO.search(message.text):
            labels = _join([self.policy.field(f).label for f in fields], last=" or ")
            reply = self.policy.notices.correct_details.format(fields=labels)
            awaiting: Awaiting = "correction"
        else:
            reply = "Just to check: " + self.confirm(decision.details, fields) + " (yes or no)"
            awaiting = "confirm"
        return decision.model_copy(update={"reply": reply, "awaiting": awaiting})

    def _guarded(self, decision: Decision, *, customer_name: str | None, previous: str | None) -> Decision:
        """Run the pre-send guard on the decision's reply. A failing reply is held for review and
        the conversation goes to a person, with the handoff notice instead (if that passes)."""
        if decision.reply is None:
            return decision
        problems = self.guard.check(decision.reply, customer_name=customer_name, previous=previous)
        if not problems:
            return decision
        held = ((decision.reply, tuple(str(p) for p in problems)),)
        severity = max(decision.severity, self.policy.escalation.min_severity)
        route = decision.route or self.policy.intents[decision.intent].route
        rules = (*decision.rules, *dict.fromkeys(f"guard.{p.kind}" for p in problems), f"route.{route}")
        notice: str | None = self.handoff_notice(severity)
        if notice == decision.reply or self.guard.check(notice or "", customer_name=customer_name,
                                                         previous=previous):
            notice = None
        return decision.model_copy(update={
            "escalate": True, "tier": Tier.human, "route": route, "severity": severity,
            "rules": tuple(dict.fromkeys(rules)), "reply": notice, "citations": (), "awaiting": None,
            "held": decision.held + held})

    def confirm(self, details: Details, fields: Sequence[str]) -> str:
        return self.policy.notices.confirm_details.format(summary=self.extractor.summary(details, list(fields)))

    def no_answer(self, severity: Severity) -> str:
        return self.policy.notices.no_answer.format(sla=_humanise(self.policy.sla_minutes[severity.name]),
                                                    hours=self._hours_text())

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
        return self.policy.notices.ask_details.format(fields=_join([self.policy.field(f).label for f in missing]))

    def _hours_text(self) -> str:
        h = self.policy.business_hours
        days = h.days
        span = f"{days[0].title()}–{days[-1].title()}" if len(days) > 1 else days[0].title()
        return f"{span} {h.start:%H:%M}–{h.end:%H:%M} {h.timezone}"
