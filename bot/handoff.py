"""The continuity brief: everything the person taking over needs, so the customer never repeats themselves.

Platform-free: :func:`build_brief` makes a :class:`Brief` from the conversation, the decision that
escalated it and the transcript; adapters render it (``Brief.text()`` for a terminal, Slack blocks in
the Slack adapter).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from bot.language import name_of
from bot.model import Conversation, Decision, Role
from bot.policy import Policy


class Line(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: Role
    author: str
    text: str
    at: datetime


class Brief(BaseModel):
    model_config = ConfigDict(frozen=True)

    conversation_id: str
    customer: str
    organisation: str | None
    contract: str | None
    """The customer's contract from the policy ("Acme Corp, enterprise"), when they have one."""
    severity: str
    intent: str
    route: str
    route_description: str
    goal: str
    """What the customer wants, in their first words."""
    why_now: list[str]
    urgent_words: list[str]
    details: dict[str, Any]
    missing: list[str]
    bot_said: list[str]
    confidence: float
    next_step: str
    timeline: list[str] = []
    tried: list[str] = []
    written_by: str = "rules"
    """Who wrote the summary fields (goal, timeline, tried, next step): ``rules`` or the model's name."""
    language: str | None = None
    """The language the customer wrote in when Baton does not answer in it ("German (de)")."""
    draft: str | None = None
    """The language model's draft reply for an assisted intent, for a person to approve or edit."""
    due: datetime | None
    transcript: list[Line]
    rules: list[str]

    def text(self) -> str:
        """The brief as plain text (the playground, logs, an email)."""
        who = self.customer + (f" ({self.organisation})" if self.organisation else "")
        if self.contract:
            who += f", contract: {self.contract}"
        out = [
            f"HANDOFF to {self.route} ({self.route_description}) · severity {self.severity} · intent {self.intent}",
            f"Customer: {who}",
            f"Goal: {self.goal}",
            "Why now: " + ("; ".join(self.why_now) or "-"),
        ]
        if self.language:
            out.append(f"Language: {self.language}")
        if self.urgent_words:
            out.append("In their words: " + " · ".join(f"\u201c{w}\u201d" for w in self.urgent_words))
        filled = {k: v for k, v in self.details.items() if v}
        if filled or self.missing:
            shown = ", ".join(f"{k}={v}" for k, v in filled.items()) or "-"
            out.append(f"Details: {shown}" + (f" (still missing: {', '.join(self.missing)})" if self.missing else ""))
        if self.timeline:
            out.append("Timeline: " + " | ".join(self.timeline))
        if self.tried:
            out.append("Tried: " + " | ".join(self.tried))
        out.append("Bot already said: " + (" | ".join(self.bot_said) if self.bot_said else "nothing yet"))
        if self.draft:
            out.append(f"Draft reply (approve or edit before sending): {self.draft}")
        out.append(f"Confidence: {self.confidence:.2f}")
        if self.due:
            out.append(f"Reply due by: {self.due:%a %d %b %H:%M %Z}")
        out.append(f"Next step: {self.next_step}")
        out.append("Transcript:")
        out.extend(f"  [{line.at:%H:%M}] {line.author} ({line.role}): {line.text}" for line in self.transcript)
        return "\n".join(out)


def explain(rule: str, policy: Policy) -> str | None:
    """One rule id in words; ``None`` for rules that say nothing a person needs (routes, cues)."""
    head, _, rest = rule.partition(".")
    if head in policy.signals:
        spec = policy.signals[head]
        return f"{spec.description or head} ({rest.replace('_', ' ')})" if rest else spec.description or head
    if head == "tier":
        intent, _, tier = rest.partition(".")
        if tier == "assisted":
            return f"{intent.replace('_', ' ')} requests are handled by a person until the bot's drafts are approved"
        return f"{intent.replace('_', ' ')} requests always go to a person"
    if head == "language":
        name = name_of(rest)
        answers = " or ".join(name_of(code) for code in policy.languages.answers)
        return f"written in {name} ({rest}) when Baton answers only in {answers}"
    if head == "smalltalk" and rest == "again":
        return "two messages in a row without a request the bot could act on"
    if head == "clarify" and rest == "unknown":
        return "the bot asked what the customer needs and still could not tell"
    if head == "fallback":
        return f"the bot has no answer and no form for {rest.replace('_', ' ')} requests"
    if head == "long_message":
        return "a very long message: the bot read only its start and its end"
    if head == "vip":
        customer = next((c for c in policy.customers if c.id == rest), None)
        return f"{customer.name if customer else rest} has a contract: severity raised"
    if head == "repeat_contact":
        intent, _, window = rest.partition(".")
        return f"the customer already contacted us about {intent.replace('_', ' ')} in the last {window}"
    if head == "trainee":
        label = policy.routes[rest].label or rest if rest in policy.routes else rest
        return f"a good first ticket for a new teammate (moves up to {label} if unclaimed in time)"
    if head == "autonomy" and rest == "draft":
        return "the bot's answer waits for a person's approval (this kind of question is in draft mode)"
    if head == "autonomy" and rest == "shadow":
        return "the bot wrote an answer but a person replies (this kind of question is in shadow mode)"
    if head == "knowledge" and rest == "no_answer":
        return "the help center does not answer this question, and the bot does not guess"
    if head == "knowledge" and rest == "asked_again":
        return "the customer asked again after the bot's help-center answer, which would have been the same"
    if head == "guard":
        return f"a bot reply was stopped by the pre-send guard ({rest.replace('_', ' ')}) and held for review"
    if head == "form":
        outcome = rest.rpartition(".")[2]
        return {"unreadable": "the bot could not read the customer's answers to its questions twice: the details "
                              "below are what it has, and what is still missing",
                "unknown": "the customer does not know the remaining details: below is what they gave",
                "unconfirmed": "the customer did not confirm the details read back to them (below, unconfirmed)",
                }.get(outcome, "the customer confirmed the details below")
    if head == "llm" and rest in policy.signals:
        return f"{policy.signals[rest].description or rest} (the language model's second opinion)"
    return None


def build_brief(policy: Policy, conversation: Conversation, decision: Decision, transcript: Sequence[Line],
                *, opened_at: datetime) -> Brief:
    route = decision.route or conversation.route or policy.intents[decision.intent].route
    why = [w for w in dict.fromkeys(explain(r, policy) for r in decision.rules) if w]
    customer_lines = [line for line in transcript if line.role is Role.customer]
    goal = customer_lines[0].text if customer_lines else ""
    contract = policy.customer_for(conversation.customer.organisation)
    return Brief(
        conversation_id=conversation.id,
        customer=conversation.customer.name or conversation.customer.id,
        organisation=conversation.customer.organisation,
        contract=f"{contract.name}, {contract.plan}" if contract else None,
        severity=str(decision.severity),
        intent=decision.intent,
        route=route,
        route_description=policy.routes[route].description,
        goal=goal[:300],
        why_now=why,
        urgent_words=list(dict.fromkeys(s.evidence for s in decision.signals)),
        details={k: v for k, v in decision.details.model_dump().items()},
        missing=list(decision.missing),
        bot_said=[line.text for line in transcript if line.role is Role.bot],
        confidence=round(decision.confidence, 3),
        next_step=policy.routes[route].next_step,
        due=policy.sla_due(decision.severity, opened_at),
        transcript=list(transcript),
        rules=list(decision.rules),
        language=decision.language,
    )
