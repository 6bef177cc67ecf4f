"""The decision core: (conversation, new message) -> decision + actions. No I/O of its own.

Rules are the floor. Every escalation trigger is a deterministic rule from the policy file, and the
decision lists the id of every rule that fired, so "why was this routed here?" has a one-line answer.
Text that tries to instruct the bot ("ignore previous instructions") is only ever matched as content:
nothing in the customer's text can switch a rule off.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from bot import smalltalk
from bot.details import DetailExtractor, unsure
from bot.guard import Guard
from bot.knowledge import Article, Grounded, KnowledgeBase
from bot.language import Detected, LanguageDetector, name_of
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
from bot.text import plain
from bot.triage import classify, detect

#: A yes to the read-back, in words, emoji or Slack's text form of them (":+1:", ":white_check_mark:").
_YES = re.compile(r"^\W*(?:(?:yes+|ye[ahs]+|yea+h?|ya+|yep+|yup+|y|ok(?:ay)?|k|correct|right|exactly|sure|"
                  r"confirm(?:ed)?|that.?s (?:right|correct|it|the one)|that is (?:right|correct|it)|"
                  r"looks (?:good|right|correct)|sounds (?:good|right)|all (?:good|correct)|spot on|perfect|"
                  r"affirmative|bingo|precisely|absolutely)\b|👍|✅|👌|✔|☑|"
                  r":(?:\+1|thumbsup|thumbs_up|white_check_mark|heavy_check_mark|ballot_box_with_check|ok_hand|ok|100):)",
                  re.I)
#: A yes that goes on to say something is off ("yes but the date is wrong") is not a confirmation.
_YES_BUT = re.compile(r"\b(?:but|except|although|though|however|apart\s+from|other\s+than|wrong|incorrect|"
                      r"not\s+(?:right|correct))\b", re.I)
_NO = re.compile(r"^\W*(?:sorry\W+)?(?:(?:no+|nope|nah|nay|negative|not (?:quite|really|right|correct|exactly|it)|"
                 r"wrong|incorrect|actually|that.?s (?:not|wrong|incorrect)|that is (?:not|wrong)|it.?s not|it isn.?t|"
                 r"it wasn.?t)\b|👎|❌|✖|:(?:-1|thumbsdown|thumbs_down|x|heavy_multiplication_x|no_entry_sign):)",
                 re.I)
#: Words that name a field without giving its value ("the date", "the time is wrong"), by field kind.
_FIELD_WORDS = {"timezone": re.compile(r"\btime\s*zone\b|\bzone\b", re.I),
                "date": re.compile(r"\b(?:date|day)\b", re.I), "time": re.compile(r"\b(?:time|hour)\b", re.I),
                "name": re.compile(r"\b(?:name|title|called)\b", re.I)}
_QUESTION = re.compile(r"\?|^\s*(?:how|what|when|where|which|why|who|can|could|does|do|is|are|will|would)\b", re.I)

LONG_MESSAGE = 4000
"""A message longer than this (characters) is triaged on its start and its end: a pasted log or thread."""
HEAD, TAIL = 3000, 1000
_GAP = "\n\n"
PROMPTS = ("greeting", "help", "unclear")
"""The notices that ask the customer what they need: a second message without a request after one of
them goes to a person rather than round the same question again."""

def _join(items: Sequence[str], last: str = " and ") -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + last + items[-1]


def _normal(text: str | None) -> str:
    return " ".join((text or "").split()).lower()


def _pick(options: Sequence[str], previous: str | None) -> str:
    """The first of ``options`` that is not the bot's previous message (the guard refuses a repeat)."""
    last = _normal(previous)
    return next((o for o in options if _normal(o) != last), options[0])


def _window(text: str) -> str:
    """An over-long message's start and end, cut at white space, joined by a blank line; others as they are."""
    if len(text) <= LONG_MESSAGE:
        return text
    head = text[:HEAD]
    cut = head.rfind(" ", HEAD - 200)
    head = head[:cut] if cut > 0 else head
    tail = text[-TAIL:]
    cut = tail.find(" ", 0, 200)
    tail = tail[cut + 1:] if cut >= 0 else tail
    return head + _GAP + tail


def _verbatim(signal: Signal, original: str) -> Signal:
    """A signal found in an over-long message's window, with evidence that is a span of the original
    (evidence that ran across the gap between start and end keeps its longer side)."""
    if signal.evidence in original:
        return signal
    parts = sorted((p.strip() for p in signal.evidence.split(_GAP) if p.strip() and p.strip() in original), key=len,
                   reverse=True)
    return signal.model_copy(update={"evidence": parts[0] if parts else original.strip()[:120]})


def _day_name(day: date, today: date) -> str:
    if day == today:
        return "today"
    if day == today + timedelta(days=1):
        return "tomorrow"
    return f"{day:%A}" if day - today < timedelta(days=7) else f"{day:%A %d %B}"


def _humanise(minutes: int) -> str:
    if minutes < 60:
        return f"{minutes} minutes"
    hours, rest = divmod(minutes, 60)
    unit = "hour" if hours == 1 else "hours"
    return f"{hours} {unit}" if not rest else f"{hours} {unit} {rest} minutes"


class Engine:
    """Decides what to do with one customer message. Construct once per policy; thread-safe.

    With a help center (as Baton always runs: the shipped one by default) every customer message ends in
    a reply, a question or a handoff. Without one (``knowledge=None``) it is the detectors alone, as the
    risk tests score them: it hands off for risk, never for want of an answer.
    """

    def __init__(self, policy: Policy, knowledge: KnowledgeBase | None = None) -> None:
        self.policy = policy
        self.knowledge = knowledge
        self.extractor = DetailExtractor(policy)
        self.guard = Guard(policy, knowledge.urls if knowledge is not None else ())
        self.languages = LanguageDetector(policy.languages.answers, min_confidence=policy.languages.min_confidence,
                                          min_letters=policy.languages.min_letters)
        notices = policy.notices
        self._prompts = frozenset(_normal(t) for name in PROMPTS for t in getattr(notices, name))
        self._clarifying = frozenset(_normal(t) for t in (*notices.help, *notices.unclear))
        self._acks = frozenset(_normal(t) for t in notices.acknowledged)
        self._detected = lru_cache(maxsize=512)(self._detect)

    def _detect(self, text: str) -> tuple[tuple[Signal, ...], tuple[str, ...]]:
        signals, rules = detect(text, self.policy)
        return tuple(signals), tuple(rules)

    def read(self, text: str) -> None:
        """Read ``text`` ahead of its decision: the rules' signals and, when none of them escalates, the help
        center's answer. Both are kept (a bounded cache), so the decision that follows, made while the turn
        holds the database, finds them ready instead of holding the database while a long message is read."""
        text = _window(text)
        signals, _ = self._detected(text)
        if self.knowledge is not None and not any(self._escalates(s) for s in signals):
            self.knowledge.answer(text)

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
        original, text = text, _window(text)
        read, fired = self._detected(text)
        signals, rules = list(read), list(fired)
        if text is not original:
            signals = [_verbatim(s, original) for s in signals]
            rules.append("long_message.start_and_end")
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

        # Never silent, before anything else answers: a message with no request in it, and one in a
        # language Baton does not answer in (neither while a form is being filled in: those are answers).
        cleaned = plain(text)
        chatter = smalltalk.kind(cleaned, original) if intent is None and not escalate else None
        language = self.languages.detect(cleaned) if intent is None and chatter is None else None
        if language is not None:
            escalate = True
            rules.append(f"language.{language.code}")

        # Details: read what this message gives, keep what earlier ones gave.
        fields = policy.form_fields(intent_name)
        details = details or Details()
        if fields:
            moment = now or datetime.now(UTC)
            found = self.extractor.extract(text, fields, now=moment, asked=asked, known=details,
                                           default_zone=zone or policy.business_hours.timezone)
            details = details.merged(found.details)
            if zone and "timezone" in fields and not details.timezone:
                details = details.merged(Details(timezone=zone))
        missing = details.missing(fields)

        reply: str | None = None
        citations: tuple[str, ...] = ()
        awaiting: Awaiting | None = None
        if chatter is not None:
            reply = self._smalltalk(chatter, previous)
            if reply is None:  # a second message in a row without a request: a person takes it from here
                escalate = True
                rules.append("smalltalk.again")
            else:
                rules.append(f"smalltalk.{chatter}")
        elif not escalate and intent_spec.answers and grounded is not None:
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
            elif _normal(previous) in self._clarifying:  # asked once already: say so and bring in a person
                escalate = True
                rules.append("clarify.unknown")
            else:
                reply = _pick(policy.notices.unclear, previous)
                rules.append("clarify.other")
        if citations and _normal(reply) == _normal(previous):
            # Asked again, and the help center would say the same thing again: that answer did not help.
            # Say so and bring in a person (never the same answer twice: the pre-send guard would hold it).
            escalate = True
            rules.append("knowledge.asked_again")
        if not escalate and fields and not missing:
            form = policy.form_of(intent_name)
            assert form is not None
            if form.confirm:
                reply = self.confirm(details, fields)
                awaiting = "confirm"
            else:
                escalate = True
                rules.append(f"form.{intent_spec.form}.complete")

        if not escalate and reply is None and not missing:
            # Nothing answered it yet: a fixed reply for the intent, else a person (an assisted intent
            # until drafts for approval exist; any other intent rather than no answer at all). The
            # detectors-only engine (no help center: the risk tests) hands off for risk alone.
            if intent_name in policy.notices.replies:
                reply = _pick(policy.notices.replies[intent_name], previous)
                rules.append(f"reply.{intent_name}")
            elif self.knowledge is None:
                pass
            elif intent_spec.tier is Tier.assisted:
                escalate = True
                rules.append(f"tier.{intent_name}.assisted")
            else:
                escalate = True
                rules.append(f"fallback.{intent_name}")

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
            reply = self._handoff_reply(rules, severity, escalating, intent_name, now=now, zone=zone,
                                        language=language)
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
            language=language.label() if language is not None else None,
        )
        return self._guarded(decision, customer_name=customer_name, previous=previous, now=now,
                             zone=zone) if guard else decision

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
            previous=conversation.last_reply,
            guard=False,
            extra=extra,
            grounded=grounded,
        )
        actions: list[Action] = []
        if owned:
            # A human owns (or is about to own) this conversation: the bot only keeps the internal
            # thread current, and says once, while nobody has claimed it yet, that the customer's new
            # words reach the person taking over. After a claim it is silent to the customer.
            actions.append(MirrorToInternal(text=message.text))
            higher = conversation.severity is not None and decision.severity > conversation.severity
            if higher:
                actions.append(OpenHandoff(route=decision.route or conversation.route or "support",
                                           severity=decision.severity, reasons=decision.rules))
            ack: str | None = None
            if state is ConversationState.escalated and _normal(conversation.last_reply) not in self._acks:
                ack = _pick(self.policy.notices.acknowledged, conversation.last_reply)
                problems = self.guard.check(ack, customer_name=conversation.customer.name,
                                            previous=conversation.last_reply)
                if problems:
                    actions.append(Hold(text=ack, problems=tuple(str(p) for p in problems)))
                    ack = None
                else:
                    actions.append(Reply(text=ack))
            return decision.model_copy(update={"reply": ack, "citations": (), "awaiting": None}), actions

        if conversation.awaiting in ("details", "confirm", "correction") and not decision.escalate:
            decision = self._after_confirmation(conversation, message, decision)
        decision = self._guarded(decision, customer_name=conversation.customer.name, previous=conversation.last_reply,
                                 now=message.at, zone=message.author.timezone or conversation.customer.timezone)

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
        """The customer's answer to the bot's own question: the details it asked for, "…: is that
        right?", or "which part should I correct?".

        A correction of any field is taken at any turn and read back again. The bot never asks the same
        thing in the same words twice (the pre-send guard would hold it): an answer it cannot read gets
        the question once more in other words, with an example; a second one, or "I don't know", hands
        the conversation to a person with what was gathered (the brief also lists what was not)."""
        fields = self.policy.form_fields(decision.intent)
        if not fields:
            return decision
        awaiting = conversation.awaiting
        zone = message.author.timezone or conversation.customer.timezone
        text = message.text
        yes = bool(_YES.search(text)) and not _YES_BUT.search(text)
        if awaiting in ("confirm", "correction") and decision.details == conversation.details and not yes:
            # A correction may name the meeting loosely ("no, it was the design review"), or give a bare
            # hour for the time it names ("the time was wrong, it was 11"): read the answer again with
            # every field open to change.
            times = tuple(f for f in self._fields_named(text, fields) if self.policy.field(f).kind == "time")
            found = self.extractor.extract(text, fields, now=message.at, asked=times,
                                           default_zone=zone or self.policy.business_hours.timezone)
            corrected = decision.details.merged(found.details)
            if corrected != decision.details:
                missing = corrected.missing(fields)
                decision = decision.model_copy(update={
                    "details": corrected, "missing": tuple(missing),
                    "reply": self.ask_for(missing) if missing else self.confirm(corrected, fields),
                    "awaiting": "details" if missing else "confirm"})
        last = _normal(conversation.last_reply)
        if decision.details != conversation.details or (awaiting == "details" and not decision.missing):
            # New or corrected values: the decision asks for what is still missing or reads them back.
            # A correction of another field while every field the question asked for is still missing
            # answers nothing asked: the question counts as unanswered (once more in other words, then a
            # person), or it would come round again in words the customer has already seen.
            unanswered = awaiting == "details" and bool(conversation.asked) and bool(decision.missing) \
                and set(conversation.asked) <= set(decision.missing)
            if _normal(decision.reply) != last and not unanswered:
                return decision
            again = self._again("details" if decision.missing else "confirm", decision, fields)
            if _normal(again) == last:
                return self._form_handoff(conversation, message, decision, "unreadable")
            return decision.model_copy(update={"reply": again})
        if awaiting == "confirm" and yes:
            return self._form_handoff(conversation, message, decision, "confirmed")
        if awaiting in ("confirm", "correction") and (named := self._fields_named(text, fields)):
            # "the date", "the time is wrong": which part, without the right value yet. Ask for just that, in
            # words of its own ("… as it should be"): the plain question for it may have been asked before.
            kept = Details(**{k: v for k, v in decision.details.model_dump().items() if k not in named})
            missing = kept.missing(fields)
            labels = _join([self.policy.field(f).label for f in missing])
            labels += ", as it should be" if len(missing) == 1 else ", as they should be"
            return decision.model_copy(update={
                "details": kept, "missing": tuple(missing), "awaiting": "details",
                "reply": self.policy.notices.ask_details.format(fields=labels)})
        if awaiting == "confirm" and _NO.search(text):
            labels = _join([self.policy.field(f).label for f in fields], last=" or ")
            return decision.model_copy(update={"reply": self.policy.notices.correct_details.format(fields=labels),
                                               "awaiting": "correction"})
        # An answer the bot cannot read: once more in other words, then a person.
        again = self._again(awaiting, decision, fields)
        if unsure(text):
            return self._form_handoff(conversation, message, decision, "unknown")
        if _normal(again) == last:
            return self._form_handoff(conversation, message, decision,
                                      "unconfirmed" if awaiting == "confirm" else "unreadable")
        return decision.model_copy(update={"reply": again, "awaiting": awaiting})

    def _again(self, awaiting: Awaiting | None, decision: Decision, fields: Sequence[str]) -> str:
        """The bot's question for ``awaiting`` in its second wording (with an example where it helps)."""
        notices = self.policy.notices
        if awaiting == "confirm":
            return notices.confirm_again.format(summary=self.extractor.summary(decision.details, list(fields)))
        if awaiting == "correction":
            return notices.correct_again.format(fields=_join([self.policy.field(f).label for f in fields], last=" or "),
                                                example=self.extractor.example(fields))
        return self.ask_again(decision.missing)

    def _form_handoff(self, conversation: Conversation, message: Message, decision: Decision,
                      outcome: str) -> Decision:
        """Hand a form's conversation to a person: ``confirmed`` details, or ``unreadable`` / ``unknown``
        / ``unconfirmed`` ones (the brief shows what was gathered and what is still missing)."""
        spec = self.policy.intents[decision.intent]
        severity = max(decision.severity, self.policy.escalation.min_severity)
        rules = (*decision.rules, f"form.{spec.form}.{outcome}", f"route.{spec.route}")
        zone = message.author.timezone or conversation.customer.timezone
        return decision.model_copy(update={
            "escalate": True, "tier": Tier.human, "route": spec.route, "severity": severity,
            "rules": tuple(dict.fromkeys(rules)), "awaiting": None,
            "reply": self.handoff_notice(severity, now=message.at, zone=zone,
                                         topic=self._topic(decision.signals, decision.intent))})

    def _fields_named(self, text: str, fields: Sequence[str]) -> set[str]:
        """The fields a message names without giving a value ("the date", "the time zone is wrong")."""
        named: set[str] = set()
        for field in fields:
            kind = self.policy.field(field).kind
            words = _FIELD_WORDS.get(kind)
            if words is None or not words.search(text):
                continue
            if kind == "time" and not _FIELD_WORDS["time"].search(_FIELD_WORDS["timezone"].sub(" ", text)):
                continue  # "the time zone" names the zone, not the time
            named.add(field)
        return named

    def _guarded(self, decision: Decision, *, customer_name: str | None, previous: str | None,
                 now: datetime | None = None, zone: str | None = None) -> Decision:
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
        notice: str | None = self.handoff_notice(severity, now=now, zone=zone,
                                                 topic=self._topic(decision.signals, decision.intent))
        if notice == decision.reply or self.guard.check(notice or "", customer_name=customer_name,
                                                         previous=previous):
            notice = None
        return decision.model_copy(update={
            "escalate": True, "tier": Tier.human, "route": route, "severity": severity,
            "rules": tuple(dict.fromkeys(rules)), "reply": notice, "citations": (), "awaiting": None,
            "held": decision.held + held})

    def confirm(self, details: Details, fields: Sequence[str]) -> str:
        return self.policy.notices.confirm_details.format(summary=self.extractor.summary(details, list(fields)))

    def no_answer(self, severity: Severity, *, now: datetime | None = None, zone: str | None = None) -> str:
        return self._promise(self.policy.notices.no_answer, severity, now=now, zone=zone)

    def passages_for_model(self, text: str, decision: Decision) -> list[tuple[Article, str]]:
        """The help center's passages the language model may answer ``text`` from: only where the offline
        ``decision`` may answer (an intent that answers, not escalated, or escalated only because the help
        center had no answer); none otherwise."""
        if self.knowledge is None or not self.policy.intents[decision.intent].answers:
            return []
        if decision.escalate and "knowledge.no_answer" not in decision.rules:
            return []
        return self.knowledge.passages_for(text)

    # ---- never silent ----

    def _smalltalk(self, kind: smalltalk.Kind, previous: str | None) -> str | None:
        """The reply to a message without a request; ``None`` when the bot already asked what the
        customer needs and gets no request again (a person takes over rather than ask in a loop)."""
        notices = self.policy.notices
        asked = _normal(previous) in self._prompts
        if kind == "thanks" or (kind in ("ack", "emoji") and previous is not None and not asked):
            return _pick(notices.thanks, previous)  # a thank-you, an "ok" or a 👍 after an answer: close warmly
        if asked:
            return None
        return _pick(notices.greeting if kind == "greeting" else notices.help, previous)

    def _handoff_reply(self, rules: Sequence[str], severity: Severity, escalating: Sequence[Signal], intent: str,
                       *, now: datetime | None, zone: str | None, language: Detected | None) -> str:
        """The honest notice for a handoff, by why it happens."""
        notices = self.policy.notices
        if language is not None:
            answers = _join([name_of(code) for code in self.policy.languages.answers], last=" or ")
            return self._promise(notices.language, severity, now=now, zone=zone, languages=answers)
        if "knowledge.no_answer" in rules:
            return self.no_answer(severity, now=now, zone=zone)
        if not escalating and "knowledge.asked_again" in rules:
            return self._promise(notices.asked_again, severity, now=now, zone=zone)
        if not escalating and "smalltalk.again" in rules:
            return self._promise(notices.again, severity, now=now, zone=zone)
        if not escalating and any(r == "clarify.unknown" or r.startswith("fallback.") for r in rules):
            return self._promise(notices.unsure, severity, now=now, zone=zone)
        return self.handoff_notice(severity, now=now, zone=zone, topic=self._topic(escalating, intent))

    def _topic(self, signals: Sequence[Signal], intent: str) -> str | None:
        """What the handoff notice says it understood: the first escalating signal's topic, else the intent's."""
        notices = self.policy.notices
        for signal in signals:
            if self._escalates(signal) and signal.kind in notices.signal_topics:
                return notices.signal_topics[signal.kind]
        return notices.intent_topics.get(intent)

    def _promise(self, template: str, severity: Severity, *, now: datetime | None, zone: str | None,
                 **values: str) -> str:
        """A notice that promises a reply time, with when the team is back if it is closed at ``now``."""
        text = template.format(sla=_humanise(self.policy.sla_minutes[severity.name]), hours=self._hours_text(),
                               **values)
        back = self._back(now, zone) if now is not None else None
        if back and self.policy.notices.closed:
            text += " " + self.policy.notices.closed.format(back=back)
        return text

    def _back(self, now: datetime, zone: str | None) -> str | None:
        """When business hours resume, in words ("Monday at 09:00 America/New_York"); ``None`` while open."""
        opening = self.policy.next_opening(now)
        if opening is None:
            return None
        hours = self.policy.business_hours
        today = now.astimezone(opening.tzinfo).date()
        text = f"{_day_name(opening.date(), today)} at {hours.start:%H:%M} {hours.timezone}"
        if zone and zone != hours.timezone:
            try:
                theirs = opening.astimezone(ZoneInfo(zone))
            except (ValueError, KeyError):
                return text
            text += f" ({_day_name(theirs.date(), now.astimezone(ZoneInfo(zone)).date())} at {theirs:%H:%M} your time)"
        return text

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

    def handoff_notice(self, severity: Severity, *, now: datetime | None = None, zone: str | None = None,
                       topic: str | None = None) -> str:
        """The handoff notice: what the bot understood (``topic``), who takes over, and when (with when
        business hours resume if ``now`` is outside them)."""
        text = self._promise(self.policy.notices.handoff, severity, now=now, zone=zone)
        understood = self.policy.notices.understood
        return f"{understood.format(topic=topic)} {text}" if topic and understood else text

    def ask_for(self, missing: Sequence[str]) -> str:
        return self.policy.notices.ask_details.format(fields=_join([self.policy.field(f).label for f in missing]))

    def ask_again(self, missing: Sequence[str]) -> str:
        """The question for ``missing`` in other words than :meth:`ask_for`, with an example answer."""
        labels = _join([self.policy.field(f).label for f in missing])
        return self.policy.notices.ask_again.format(fields=labels, example=self.extractor.example(missing) or labels)

    def _hours_text(self) -> str:
        h = self.policy.business_hours
        days = h.days
        span = f"{days[0].title()}–{days[-1].title()}" if len(days) > 1 else days[0].title()
        return f"{span} {h.start:%H:%M}–{h.end:%H:%M} {h.timezone}"
