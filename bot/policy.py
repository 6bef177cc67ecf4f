"""The policy file: intents and tiers, signal lexicons, routes, SLA, business hours, forms, VIPs.

A deployment's support lead edits this TOML file, not the code. It is validated once at start; an
invalid file raises :class:`PolicyError` naming the file, the key and the reason. Every rule carries
an id, and every decision lists the ids that fired.
"""

from __future__ import annotations

import re
import string
import tomllib
from datetime import datetime, time, timedelta
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from bot.model import Severity, Tier

DEFAULT_POLICY = "policy.toml"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPACE = r"\s+"
_RULE_ID = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$"


def _parse_severity(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return Severity[v]
        except KeyError:
            raise ValueError(f"{v!r} is not a severity; use one of {[s.name for s in Severity]}") from None
    return v


SeverityName = Annotated[Severity, BeforeValidator(_parse_severity)]
"""A severity written by name in the file ("high")."""


def _check_patterns(patterns: list[str]) -> list[str]:
    try:
        _compile(patterns)  # as the rule will use them (re's cache keeps it for the rule's own compile)
    except re.error as together:
        for p in patterns:  # name the pattern at fault
            try:
                re.compile(p.replace(" ", _SPACE))  # as _compile reads it: a space is any run of white space
            except re.error as exc:
                hint = " (a space matches any run of white space; write \\s for exactly one)" if " " in p else ""
                raise ValueError(f"pattern {p!r} is not a valid regular expression: {exc}{hint}") from None
        raise ValueError(f"the patterns are not a valid regular expression together: {together}") from None
    return patterns


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ValueError with a readable message if there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. 'America/New_York')") from None


class PolicyError(ValueError):
    """An unusable policy file; the message names the file, the key and the reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _compile(patterns: list[str], bounded: bool = True) -> re.Pattern[str]:
    # Whole words only unless the rule says otherwise (punctuation cues such as "!!" are not words).
    # Case-insensitive, so lexicons are written in lower case; "(?-i:...)" scopes case back in.
    # A space in a pattern matches any run of white space ("aren't  mine", a line break).
    body = "|".join("(?:" + p.replace(" ", _SPACE) + ")" for p in patterns)
    return re.compile(rf"(?<![\w'])(?:{body})(?![\w'])" if bounded else body, re.I)


class Rule(_Strict):
    """A lexicon rule: if any pattern matches, the rule fires with the matched span as evidence."""

    id: str = Field(pattern=_RULE_ID)
    patterns: list[str] = Field(min_length=1)
    severity: SeverityName | None = None
    """Overrides the signal's default severity for this rule."""
    negatable: bool = True
    """A negator just before the match in the same clause ("no refund needed") cancels it."""
    bounded: bool = True
    """Match whole words only; false for punctuation cues."""
    emphasis: bool = False
    """An emphasis cue (punctuation, capitals, "urgent"): it says how strongly, not what. On a how-to
    question (``escalation.questions``) emphasis cues are recorded but never escalate."""

    _patterns = field_validator("patterns")(_check_patterns)

    @cached_property
    def regex(self) -> re.Pattern[str]:
        return _compile(self.patterns, self.bounded)


class SignalSpec(_Strict):
    description: str = ""
    """The signal in a few words, for the handoff brief's "why now"."""
    severity: SeverityName
    route: str
    escalate: bool = True
    """False: the signal is recorded and shown, but never escalates by itself."""
    intent: str | None = None
    """The intent this signal points to, for the intent classifier."""
    rules: list[Rule] = Field(min_length=1)


class Cue(_Strict):
    id: str = Field(pattern=_RULE_ID)
    patterns: list[str] = Field(min_length=1)
    weight: float = Field(default=1.0, gt=0)
    topic: bool = False
    """A cue that only names the subject ("meeting", "invoice"): an intent with nothing but topic cues
    does not win a question (the help center answers it) and never wins on a weight below 1."""

    _patterns = field_validator("patterns")(_check_patterns)

    @cached_property
    def regex(self) -> re.Pattern[str]:
        return _compile(self.patterns)


class IntentSpec(_Strict):
    description: str = ""
    tier: Tier
    route: str
    autonomy: Literal["shadow", "draft", "auto"] = "draft"
    form: str | None = None
    answers: bool = False
    """Answer from the help center; a question it does not cover goes to a person."""
    cues: list[Cue] = []

    @model_validator(mode="after")
    def _human_never_auto(self) -> IntentSpec:
        if self.tier is Tier.human and self.autonomy == "auto":
            raise ValueError("an intent of the human tier can never be answered without a person: autonomy = "
                             "'auto' is not allowed (use 'draft' or 'shadow')")
        return self


class Route(_Strict):
    description: str = ""
    slack: str = Field(min_length=1)
    """A Slack user group id (S...) to mention, or a channel id (C.../G...) to post in."""
    escalates_to: str | None = None
    """Where an unclaimed handoff goes once its SLA has passed."""
    next_step: str = "Read the brief, reply to the customer in the thread, and claim the conversation."
    """The suggested next step printed on the handoff brief."""
    label: str | None = None
    """A short name for buttons ("Loop in CTO"); the route's name when unset."""


class BusinessHours(_Strict):
    timezone: str
    days: list[str] = Field(min_length=1)
    start: time
    end: time

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        zone(v)
        return v

    @field_validator("days")
    @classmethod
    def _days(cls, v: list[str]) -> list[str]:
        bad = [d for d in v if d not in WEEKDAYS]
        if bad:
            raise ValueError(f"unknown day(s) {bad}; use {list(WEEKDAYS)}")
        return v

    @model_validator(mode="after")
    def _order(self) -> BusinessHours:
        if self.start >= self.end:
            raise ValueError("start must be before end")
        return self


FieldKind = Literal["name", "date", "time", "timezone", "pattern"]


class FieldSpec(_Strict):
    """One detail a form can gather. ``kind`` says how it is read from the customer's words:
    ``name`` a quoted or capitalised name, ``date``/``time`` through the date parser (in the
    customer's time zone), ``timezone`` a zone name or abbreviation, ``pattern`` a regex of your own."""

    kind: FieldKind
    label: str
    """How the bot names the field when it asks for it ("the meeting's name")."""
    pattern: str | None = None
    example: str | None = None
    """An answer in the form the bot reads, shown when it asks a second time ("yesterday", "at 3pm")."""

    @model_validator(mode="after")
    def _pattern(self) -> FieldSpec:
        if self.kind == "pattern":
            if not self.pattern:
                raise ValueError("a field of kind 'pattern' needs a pattern")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"bad pattern: {exc}") from None
        return self


DEFAULT_FIELDS = {
    "meeting_name": FieldSpec(kind="name", label="the meeting's name", example="Weekly Sync,"),
    "date": FieldSpec(kind="date", label="the date of the meeting", example="yesterday"),
    "time": FieldSpec(kind="time", label="the time it started", example="at 3pm"),
    "timezone": FieldSpec(kind="timezone", label="your time zone", example="Pacific time"),
}


class Form(_Strict):
    fields: list[str] = Field(min_length=1)
    confirm: bool = True
    """Read the gathered details back to the customer and route only once they say it is right."""


class Knowledge(_Strict):
    embeddings: bool = True
    """Rank with sentence embeddings combined with the lexical score (when the model is installed)."""
    min_match: float = Field(default=0.65, ge=0, le=3)
    """With embeddings: how well the best passage must match before the bot answers from it: the cosine
    similarity of the question and its closest sentence plus ``lexical_weight`` x the article's coverage."""
    lexical_weight: float = Field(default=0.5, ge=0, le=2)
    min_score: float = Field(default=0.45, ge=0, le=1)
    """Lexical ranking only (no model): how much of the question an article must cover (0-1) before the
    bot answers from it."""
    max_sentences: int = Field(default=3, ge=1, le=10)
    cache: str | None = None
    """Folder for the sentence vectors of the help center and the prepared model file; by default
    $BATON_CACHE_DIR, else $XDG_CACHE_HOME/baton, else ~/.cache/baton."""


class Guard(_Strict):
    internal_names: list[str] = []
    """Staff names the customer must never see in a bot message (e.g. who is on call)."""
    internal_markers: list[str] = ["internal note", "internal only", "do not share", "rule id", "[internal]"]


class Customer(_Strict):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    name: str
    match: list[str] = Field(min_length=1)
    """Organisation ids (Slack team ids, Discord guild ids) that belong to this customer."""
    plan: str = "enterprise"
    severity_boost: int = Field(default=1, ge=0, le=3)


class Escalation(_Strict):
    min_severity: SeverityName = Severity.medium
    """A signal below this is recorded but does not escalate alone."""
    combine: int = Field(default=2, ge=2)
    """This many distinct low-severity cues of one kind add up to a medium signal."""
    loop_in: list[str] = ["engineering", "cto"]
    """Routes the handoff card offers a "Loop in ..." button for."""
    questions: list[str] = []
    """Ids of intent cues that mark a how-to question ("how do I ...", "does it work with ..."). On such a
    question, emphasis cues are recorded but never escalate, and low cues do not add up: "URGENT!! how do I
    share a recording??" is a how-to asked in a hurry, not a complaint."""


class Review(_Strict):
    """The QA review queue: what is sampled for a person to tag, and what the tags mean."""

    enabled: bool = False
    """Sample decisions for review (posted to ``BATON_REVIEW_CHANNEL``, else the internal channel)."""
    auto_share: float = Field(default=0.1, ge=0, le=1)
    """The share of answers sent on their own (``auto``) that go to review afterwards."""
    low_confidence: float = Field(default=0.5, ge=0, le=1)
    """Every decision below this confidence goes to review."""
    tags: list[str] = Field(default=["correct", "wrong article", "outdated article", "missing article", "wrong tone",
                                     "should have escalated", "unnecessary escalation", "wrong route"], min_length=1)
    harmful: list[str] = Field(default=["should have escalated"])
    """Tags that demote the intent at once."""
    harmful_when_sensitive: list[str] = Field(default=["wrong article"])
    """Tags that demote at once when the intent is one of ``sensitive``."""
    sensitive: list[str] = Field(default=["account_access", "billing", "cancellation"])
    knowledge: list[str] = Field(default=["wrong article", "outdated article", "missing article"])
    """Tags that blame the help center: the help-center owner group is mentioned, with the article."""
    knowledge_owner: str | None = None
    """The route whose group owns the help center."""


class Trainee(_Strict):
    """Handoffs fit for a new hire (these intents, at most this severity) go to the trainee route, marked as
    a good first ticket; unclaimed past their SLA, they move up to the route they would have had."""

    route: str | None = None
    """The trainee route (its own Slack user group); none: no trainee queue."""
    intents: list[str] = []
    max_severity: SeverityName = Severity.low


class RepeatContact(_Strict):
    window_days: int = Field(default=7, ge=1)
    severity: SeverityName = Severity.medium
    route: str = "support"
    intents: list[str] = []
    """Intents whose repeat counts; an empty list means every intent but 'other'."""


NOTICE_FIELDS = {"handoff": {"sla", "hours"}, "ask_details": {"fields"}, "confirm_details": {"summary"},
                 "ask_again": {"fields", "example"}, "confirm_again": {"summary"},
                 "correct_again": {"fields", "example"},
                 "correct_details": {"fields"}, "no_answer": {"sla", "hours"}, "answer": {"passage", "title", "url"},
                 "csat": set(), "csat_thanks": set()}
NOTICE_FIELDS |= {"language": {"sla", "hours", "languages"}, "unsure": {"sla", "hours"}, "again": {"sla", "hours"},
                  "closed": {"back"},
                  "understood": {"topic"}, "acknowledged": set(), "greeting": set(), "help": set(), "thanks": set(),
                  "unclear": set(), "signal_topics": set(), "intent_topics": set(), "replies": set()}


class Notices(_Strict):
    """What the bot says, with {placeholders} the engine fills in (each notice has its own set)."""

    handoff: str
    ask_details: str
    confirm_details: str = "{summary}: is that right?"
    correct_details: str = "Sorry about that. Which part should I correct: {fields}?"
    ask_again: str = "Sorry, I couldn't read that. Could you send {fields}, written like \"{example}\"?"
    """Asked once when an answer to ``ask_details`` gave nothing the bot could read (in other words than
    the first time, with an example); a second such answer goes to a person with what was gathered."""
    confirm_again: str = "Just to check, is this right: {summary}? A yes or a no is all I need."
    """Asked once when the answer to ``confirm_details`` is neither yes, no nor a correction."""
    correct_again: str = ("Sorry, I didn't catch what to change. Could you write the right details, like "
                          "\"{example}\"?")
    """Asked once when the answer to ``correct_details`` gave no new value."""
    no_answer: str = ("I don't want to guess on this one, so I'm getting a person from our team to answer. "
                      "Expect a reply within {sla} during business hours ({hours}).")
    answer: str = "{passage}\n\nMore in \"{title}\": {url}"
    csat: str = ("We've marked this as resolved. How did we do, from 1 (poorly) to 5 (very well)? "
                 "Just reply with a number.")
    """Asked in the customer's thread when staff resolve a conversation; empty = no question."""
    csat_thanks: str = "Thank you for the feedback!"

    # ---- never silent: every customer message ends in an answer, a question or an honest handoff ----
    language: str = ("Thanks for your message! I can only write in {languages} myself, so I've passed it to a "
                     "person from our team, who will follow up here. Expect a reply within {sla} during business "
                     "hours ({hours}).")
    """The handoff notice for a message in a language Baton does not answer in (it is sent in English)."""
    unsure: str = ("I'm not sure I can help with this one myself, so I've asked a person from our team to follow "
                   "up here. Expect a reply within {sla} during business hours ({hours}).")
    """The handoff notice when the bot still cannot tell what the customer needs after asking once, or has
    neither an answer nor a form for a request."""
    again: str = ("Let me bring in a person from our team, who will follow up here. Expect a reply within {sla} "
                  "during business hours ({hours}).")
    """The handoff notice after a second message in a row without a request (a greeting, "help", an emoji)."""
    asked_again: str = ("It sounds like that didn't answer your question, so I'm bringing in a person from our team. "
                        "Expect a reply within {sla} during business hours ({hours}).")
    """The handoff notice when a question is asked again and the help center's answer would be the same."""
    understood: str = "I understand this is {topic}."
    """Said before the handoff notice when the signal or intent that escalated has a topic below; empty: never."""
    signal_topics: dict[str, str] = {}
    """What the handoff notice says it understood, by the signal kind that escalated ("about a charge ...")."""
    intent_topics: dict[str, str] = {}
    """The same by intent, when no escalating signal has a topic."""
    closed: str = "Our team is away right now and back {back}."
    """Added to every notice that promises a reply time when the message comes outside business hours."""
    greeting: list[str] = Field(default=["Hi! What can I help you with today?",
                                         "Hello! What can I do for you?"], min_length=1)
    """Replies to a greeting with no request in it (one is picked that differs from the bot's last message)."""
    help: list[str] = Field(default=["Happy to help! Could you tell me a bit about what you need?",
                                     "Sure, what can I help you with? A sentence or two about it is plenty."],
                            min_length=1)
    """Asks what they need after "help", an emoji, a bare link or "?"."""
    thanks: list[str] = Field(default=["You're welcome! If anything else comes up, just write here.",
                                       "Glad I could help! I'm here if you need anything else."], min_length=1)
    """Closes warmly after thanks or an "ok"."""
    unclear: list[str] = Field(default=["Could you tell me a bit more about what you need, so I can help or find "
                                        "the right person?"], min_length=1)
    """Asks once what a message that is neither a question nor a known request is about."""
    acknowledged: list[str] = Field(default=["Thanks! I've added this to your conversation for the person from our "
                                             "team who is taking over."], min_length=1)
    """Said once when the customer writes again while a handoff is still unclaimed."""
    checking: list[str] = Field(default=["Thanks! A teammate is checking the answer before I send it; you'll hear "
                                         "back here shortly."], min_length=1)
    """Said instead of an answer that waits for a person's approval (an intent in ``draft`` mode)."""
    replies: dict[str, list[str]] = {}
    """A fixed reply per intent that the bot neither answers from the help center nor gathers details for
    (e.g. feedback); an intent with none of these, and automated, is handed to a person rather than left
    without an answer."""

    @model_validator(mode="after")
    def _placeholders(self) -> Notices:
        problems = []
        for name, allowed in NOTICE_FIELDS.items():
            value = getattr(self, name)
            texts = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else [value]
            texts = [t for item in texts for t in (item if isinstance(item, list) else [item])]
            try:
                used = {f for text in texts for _, f, _, _ in string.Formatter().parse(text) if f is not None}
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
                continue
            if unknown := sorted(used - allowed):
                problems.append(f"{name}: unknown placeholder(s) {unknown}; this notice can use {sorted(allowed)}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Autonomy(_Strict):
    """How an intent earns and loses autonomy (see ``bot/autonomy.py``): over the last ``window`` reviewed
    drafts, it may rise one step (shadow -> draft -> auto) with at least ``min_sample`` of them, at least
    ``promote_unedited`` approved without an edit, a mean edit ratio of at most ``promote_max_edit`` and at
    most ``max_rejected`` rejected; it falls one step at once on a harmful rejection, or when the approved-
    unedited share drops below ``demote_unedited``."""

    window: int = Field(default=50, ge=5, le=1000)
    min_sample: int = Field(default=20, ge=1)
    promote_unedited: float = Field(default=0.9, ge=0, le=1)
    promote_max_edit: float = Field(default=0.1, ge=0, le=1)
    max_rejected: float = Field(default=0.1, ge=0, le=1)
    demote_unedited: float = Field(default=0.7, ge=0, le=1)
    auto_promote: bool = False
    """Promote without a lead's click (demotion is always automatic)."""
    show_approver: bool = False
    """An approved draft is sent under the approver's name; else in the bot's voice."""
    reject_reasons: list[str] = Field(default=["wrong answer", "outdated article", "missing article", "wrong tone",
                                               "should have escalated"], min_length=1)
    harmful: list[str] = Field(default=["wrong answer", "should have escalated"])
    """Reject reasons that demote the intent at once."""

    @model_validator(mode="after")
    def _harmful_are_reasons(self) -> Autonomy:
        unknown = sorted(set(self.harmful) - set(self.reject_reasons))
        if unknown:
            raise ValueError(f"autonomy.harmful lists reasons that are not in reject_reasons: {unknown}")
        return self


class Languages(_Strict):
    answers: list[str] = Field(default=["en"], min_length=1)
    """ISO 639-1 codes of the languages Baton answers in; a message confidently in another goes to a person."""
    min_confidence: float = Field(default=0.8, gt=0, le=1)
    """How sure the language detector must be before a message counts as written in another language."""
    min_letters: int = Field(default=12, ge=1)
    """Shorter messages are never called foreign (too little to tell "ok" or a product name by); in a script
    other than Latin, where each letter says more, at most 4 letters are needed."""


class Meta(_Strict):
    name: str
    version: str


class Policy(_Strict):
    meta: Meta
    escalation: Escalation = Escalation()
    negation: list[str] = Field(min_length=1)
    """Words that cancel a negatable rule when they stand just before its match, in the same clause."""
    intents: dict[str, IntentSpec] = Field(min_length=1)
    default_intent: str = "other"
    signals: dict[str, SignalSpec] = Field(min_length=1)
    routes: dict[str, Route] = Field(min_length=1)
    sla_minutes: dict[str, int]
    business_hours: BusinessHours
    fields: dict[str, FieldSpec] = {}
    """Fields forms can gather, beyond the built-in meeting_name, date, time and timezone."""
    forms: dict[str, Form] = {}
    knowledge: Knowledge = Knowledge()
    guard: Guard = Guard()
    customers: list[Customer] = []
    repeat_contact: RepeatContact = RepeatContact()
    notices: Notices
    languages: Languages = Languages()
    autonomy: Autonomy = Autonomy()
    trainee: Trainee = Trainee()
    review: Review = Review()
    source: str = "<memory>"

    @field_validator("sla_minutes")
    @classmethod
    def _sla(cls, v: dict[str, int]) -> dict[str, int]:
        missing = [s.name for s in Severity if s.name not in v]
        extra = [k for k in v if k not in Severity.__members__]
        if missing or extra:
            raise ValueError(f"needs exactly one entry per severity {[s.name for s in Severity]}"
                             f" (missing {missing}, unknown {extra})")
        if any(m <= 0 for m in v.values()):
            raise ValueError("minutes must be positive")
        return v

    @model_validator(mode="after")
    def _references(self) -> Policy:
        problems: list[str] = []
        for name, intent in self.intents.items():
            if intent.route not in self.routes:
                problems.append(f"intents.{name}.route: unknown route {intent.route!r}")
            if intent.form and intent.form not in self.forms:
                problems.append(f"intents.{name}.form: unknown form {intent.form!r}")
        for name, form in self.forms.items():
            for f in form.fields:
                if f not in self.fields and f not in DEFAULT_FIELDS:
                    problems.append(f"forms.{name}.fields: unknown field {f!r} (declare it under [fields.{f}])")
        for kind, spec in self.signals.items():
            if spec.route not in self.routes:
                problems.append(f"signals.{kind}.route: unknown route {spec.route!r}")
            if spec.intent and spec.intent not in self.intents:
                problems.append(f"signals.{kind}.intent: unknown intent {spec.intent!r}")
        for name, route in self.routes.items():
            if route.escalates_to and route.escalates_to not in self.routes:
                problems.append(f"routes.{name}.escalates_to: unknown route {route.escalates_to!r}")
        for name in self.escalation.loop_in:
            if name not in self.routes:
                problems.append(f"escalation.loop_in: unknown route {name!r}")
        if self.default_intent not in self.intents:
            problems.append(f"default_intent: unknown intent {self.default_intent!r}")
        if self.repeat_contact.route not in self.routes:
            problems.append(f"repeat_contact.route: unknown route {self.repeat_contact.route!r}")
        if self.review.knowledge_owner is not None and self.review.knowledge_owner not in self.routes:
            problems.append(f"review.knowledge_owner: unknown route {self.review.knowledge_owner!r}")
        problems += [f"review: {name!r} is not one of review.tags" for name in
                     [*self.review.harmful, *self.review.harmful_when_sensitive, *self.review.knowledge]
                     if name not in self.review.tags]
        if self.trainee.route is not None and self.trainee.route not in self.routes:
            problems.append(f"trainee.route: unknown route {self.trainee.route!r}")
        problems += [f"trainee.intents: unknown intent {name!r}" for name in self.trainee.intents
                     if name not in self.intents]
        for i in self.repeat_contact.intents:
            if i not in self.intents:
                problems.append(f"repeat_contact.intents: unknown intent {i!r}")
        ids = [r.id for s in self.signals.values() for r in s.rules]
        cue_ids = [c.id for i in self.intents.values() for c in i.cues]
        ids += cue_ids
        for cue in self.escalation.questions:
            if cue not in cue_ids:
                problems.append(f"escalation.questions: unknown intent cue {cue!r}")
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            problems.append(f"rule ids must be unique; repeated: {dupes}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _notice_references(self) -> Policy:
        notices = self.notices
        problems = [f"notices.signal_topics: unknown signal {k!r}" for k in notices.signal_topics
                    if k not in self.signals]
        problems += [f"notices.{name}: unknown intent {k!r}" for name in ("intent_topics", "replies")
                     for k in getattr(notices, name) if k not in self.intents]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # ---- derived, for the engine ----

    @cached_property
    def negation_regex(self) -> re.Pattern[str]:
        return _compile(self.negation)

    @cached_property
    def question_cues(self) -> tuple[Cue, ...]:
        """The intent cues named in ``escalation.questions``: a match marks a how-to question."""
        wanted = set(self.escalation.questions)
        return tuple(c for i in self.intents.values() for c in i.cues if c.id in wanted)

    def customer_for(self, organisation: str | None) -> Customer | None:
        if not organisation:
            return None
        return next((c for c in self.customers if organisation in c.match), None)

    def field(self, name: str) -> FieldSpec:
        return self.fields.get(name) or DEFAULT_FIELDS[name]

    def form_of(self, intent: str | None) -> Form | None:
        spec = self.intents.get(intent) if intent else None
        return self.forms[spec.form] if spec is not None and spec.form else None

    def form_fields(self, intent: str) -> list[str]:
        spec = self.intents.get(intent)
        if spec is None or spec.form is None:
            return []
        return list(self.forms[spec.form].fields)

    def sla(self, severity: Severity) -> timedelta:
        return timedelta(minutes=self.sla_minutes[severity.name])

    def next_opening(self, at: datetime) -> datetime | None:
        """When business hours next begin after ``at`` (in the policy's zone); ``None`` while they are open."""
        hours = self.business_hours
        office = ZoneInfo(hours.timezone)
        local = at.astimezone(office)
        open_days = {WEEKDAYS.index(d) for d in hours.days}
        if local.weekday() in open_days and hours.start <= local.time().replace(tzinfo=None) < hours.end:
            return None
        for ahead in range(8):
            day = local.date() + timedelta(days=ahead)
            opening = datetime.combine(day, hours.start, tzinfo=office)
            if day.weekday() in open_days and opening > local:
                return opening
        return None

    def sla_due(self, severity: Severity, start: datetime) -> datetime:
        """When a handoff opened at ``start`` is due, counting only business hours."""
        hours = self.business_hours
        zone = ZoneInfo(hours.timezone)
        left = self.sla(severity)
        now = start.astimezone(zone)
        open_days = {WEEKDAYS.index(d) for d in hours.days}
        for _ in range(366 * 2):  # bounded: at most two years of days
            day_start = now.replace(hour=hours.start.hour, minute=hours.start.minute, second=0, microsecond=0)
            day_end = now.replace(hour=hours.end.hour, minute=hours.end.minute, second=0, microsecond=0)
            if now.weekday() in open_days and now < day_end:
                begin = max(now, day_start)
                if begin + left <= day_end:
                    return (begin + left).astimezone(start.tzinfo)
                left -= day_end - begin
            next_day = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
            now = next_day.replace(tzinfo=zone)
        raise PolicyError("business_hours: no open hours found within two years")


def load_policy(path: str | Path | None = None) -> Policy:
    """Load and validate a policy file; ``None`` loads the shipped default."""
    if path is None:
        ref = resources.files("bot.defaults").joinpath(DEFAULT_POLICY)
        name, raw = f"<shipped>/{DEFAULT_POLICY}", ref.read_bytes()
    else:
        name = str(path)
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise PolicyError(f"{name}: cannot read the policy file: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{name}: not valid TOML: {exc}") from None
    data["source"] = name
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"{name}: {key}: {err['msg']}")
        raise PolicyError("\n".join(lines)) from None
