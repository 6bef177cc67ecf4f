"""The runtime core: inbox (dedupe) -> engine -> store and outbox, and the staff actions on a handoff.

Adapters call :meth:`Service.handle` with platform-free messages and the staff methods (claim, loop
in, send to customer, resolve) with ids. Every action is written to the outbox in the same
transaction as what caused it, before anything is sent; the :class:`bot.outbox.Courier` delivers.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import uuid
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy.exc import DBAPIError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from bot import autonomy
from bot.autonomy import Mode
from bot.engine import Engine
from bot.handoff import Brief, Line, build_brief
from bot.model import (
    TO_CUSTOMER,
    Action,
    AutonomyNotice,
    CardUpdate,
    Conversation,
    ConversationState,
    Decision,
    Handoff,
    Hold,
    Message,
    Note,
    OpenHandoff,
    Person,
    PriorContact,
    Reply,
    ReviewItem,
    Role,
    StaffReply,
)
from bot.outbox import Parcel
from bot.policy import Policy
from bot.store import Card, Inbound, Store, thread_key
from bot.web.metrics import NO_METRICS, Metrics

if TYPE_CHECKING:  # the openai package takes about a second to import: only when a model is configured
    from bot.llm import HandoffNote, LanguageModel, Opinion

log = structlog.get_logger(__name__)

_SCORE = re.compile(r"^\W*([1-5])(?:\s*/\s*5)?\W*$")
STAFF_GUARD = ("empty", "placeholder", "internal", "wrong_person", "notifies")
"""The guard's checks that apply to what staff send: links and repeats are theirs to judge."""


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
    ignored: str | None = None
    """Why the message was deliberately not acted on (e.g. an edit that raises no risk)."""
    queued: tuple[int, ...] = ()
    """The outbox rows this message wrote."""
    delivered: int = 0
    """How many of them the worker delivered itself, at once (the rest are the courier's)."""


@dataclass(frozen=True)
class Hints:
    """The language model's part of a turn, asked before the turn's transaction (a model call never
    holds a database connection): its second opinion, and its note for a handoff's brief."""

    opinion: Opinion | None = None
    note: HandoffNote | None = None


Deliver = Callable[[Sequence[dict[str, Any]], tuple[Conversation, Handoff | None]], Awaitable[int]]


@dataclass(frozen=True)
class Tagged:
    """What tagging a review item did: why not (``problems``), or whom to tell about the help center."""

    problems: list[str] = field(default_factory=list)
    owner: str | None = None
    """The route of the help center's owners, when the tag blames an article."""
    article: str | None = None


def sampled(key: str, share: float) -> bool:
    """Whether ``key`` falls in a ``share`` of all keys: the same answer for the same key in every
    process (a hash, not a random draw), and ``share`` of them over many keys."""
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return digest / 2**64 < share


@dataclass(frozen=True)
class ClaimResult:
    won: bool
    owner: str | None


class Service:
    def __init__(self, engine: Engine, store: Store, *, llm: LanguageModel | None = None,
                 first_reply: float = 10.0, lease: timedelta = timedelta(seconds=30)) -> None:
        self.engine = engine
        self.store = store
        self.llm = llm
        """The language model's second opinion, brief and drafts; ``None``: the offline engine alone."""
        self.first_reply = first_reply
        """Seconds the model may add to a customer's wait, all its calls for one message together."""
        self.lease = lease
        """How long a worker holds the outbox rows it delivers itself before the courier may take them."""
        self.wake: Callable[[], None] = lambda: None
        """Called after anything is written to the outbox (the application points it at ``Courier.kick``)."""
        self.deliver: Deliver | None = None
        """The fast path: the worker that decided delivers what it decided at once (``Courier.deliver_now``);
        ``None``: everything goes through the courier."""
        self.next_in_thread: Callable[[int], None] = lambda _id: None
        """Told of the next pending inbox row of a thread that a turn has just finished (the inbox)."""
        self.metrics: Metrics = NO_METRICS
        """Counted at the points that matter (the application sets it when ``BATON_METRICS`` is on)."""
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @property
    def policy(self) -> Policy:
        return self.engine.policy

    # ---- messages ----

    async def handle(self, message: Message) -> Outcome:
        """Receive one message and handle it now: stored in the inbox, then worked on as any inbox row.
        (Platforms store first and acknowledge, then their inbox workers call :meth:`work`.)"""
        return await self._receive_and_work(message, "message")

    async def handle_edit(self, message: Message) -> Outcome:
        """A customer edited a message: decide on it again only if the new text raises the risk."""
        return await self._receive_and_work(message, "edit")

    async def receive(self, message: Message, *, kind: str = "message") -> int | None:
        """Store a translated message in the inbox (its id; ``None`` for a duplicate)."""
        # The platform's order within the thread: when it was written (an edit: when it was edited, now).
        at = message.at if kind == "message" else datetime.now(UTC)
        self.metrics.received(message.platform)
        stored = await self.store.receive(message.platform, message.event_id, kind=kind,
                                          payload=message.model_dump(mode="json"), thread=thread_of(message),
                                          seq=at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f"))
        self.metrics.acknowledged(message.platform, "duplicate" if stored is None else "stored")
        return stored

    async def _receive_and_work(self, message: Message, kind: str) -> Outcome:
        key = thread_of(message)
        async with self._lock(key):
            inbound_id = await self.receive(message, kind=kind)
            if inbound_id is None:
                log.info("duplicate_event_dropped", event_id=message.event_id, platform=message.platform)
                return Outcome(duplicate=True)
            inbound = Inbound(id=inbound_id, platform=message.platform, event_id=message.event_id, kind=kind,
                              payload={}, thread_key=key)
            outcome = await self._work(inbound, message)
        return outcome if outcome is not None else Outcome(ignored="handled by another worker")

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    async def work(self, inbound: Inbound, message: Message) -> Outcome | None:
        """Handle one inbox row (``message`` is its translation): the turn, its inbox row's completion and
        its outbox rows commit in one transaction. ``None`` when the row is not this worker's to do now
        (another worker holds it, or an earlier message of its thread is still pending)."""
        async with self._lock(inbound.thread_key):
            return await self._work(inbound, message)

    async def _work(self, inbound: Inbound, message: Message) -> Outcome | None:
        bound = log.bind(event_id=message.event_id, platform=message.platform, inbox_id=inbound.id)
        hints = None
        if self.llm is not None and message.from_customer and inbound.kind == "message":
            # The model is asked outside the turn's transaction, so only for a row that is this worker's
            # to do now (an edit is decided by the rules: it is worked on only when it raises the risk).
            if not await self.store.pending_inbound(ids=[inbound.id]):
                return None
            hints = await self._consult(message)
        if message.from_customer:
            # The text is read before the turn takes the database (on SQLite, the one connection every
            # acknowledgement needs too): a 40,000-character message holds no one else up while it is read.
            await asyncio.to_thread(self.engine.read, message.text)
        taken: list[dict[str, Any]] = []
        found: tuple[Conversation, Handoff | None] | None = None
        following: int | None = None
        stored_at: datetime | None = None
        try:
            # A database hiccup (a lock timeout, a dropped connection) is retried: the turn is one
            # transaction, so a retry never stores half of it twice.
            async for attempt in AsyncRetrying(retry=retry_if_exception_type(DBAPIError), reraise=True,
                                               stop=stop_after_attempt(4), wait=wait_exponential(0.1, max=2)):
                with attempt:
                    async with self.store.transaction():
                        taken_row = await self.store.take_inbound(inbound.id)
                        if taken_row is None:
                            bound.debug("inbound_not_ours")
                            return None
                        stored_at = await self.metrics.stored_at(self.store, inbound.id)
                        if inbound.kind == "edit":
                            outcome = await self._edit(message, bound, hints)
                        elif message.author.role is not Role.customer:
                            outcome = await self._from_company(message, bound)
                        else:
                            outcome = await self._from_customer(message, bound, hints)
                        await self.store.finish_inbound(inbound.id)
                        following = taken_row.following
                        if outcome.queued and self.deliver is not None and outcome.conversation is not None:
                            taken = await self.store.take_rows(outcome.queued, lease=self.lease)
                            if taken and all(row["kind"] in TO_CUSTOMER for row in taken):
                                found = (outcome.conversation, None)  # replies need no handoff
                            elif taken:
                                found = await self.store.with_handoff(outcome.conversation.id)
        except Exception as exc:
            gave_up = await self._failed(inbound, exc)
            bound.error("inbound_failed", error=f"{type(exc).__name__}: {exc}", gave_up=gave_up)
            self.metrics.handled(inbound.platform, "failed")
            raise
        self.metrics.turn(inbound.platform, outcome, stored_at)  # committed
        if following is not None:
            self.next_in_thread(following)
        if outcome.queued and not taken:
            self.wake()
        if taken and found is not None and self.deliver is not None:
            outcome = replace(outcome, delivered=await self.deliver(taken, found))
        return outcome

    async def ignore(self, inbound: Inbound) -> bool:
        """Close an inbox row that holds nothing for the bot (its platform said so), in its turn."""
        following = None
        async with self.store.transaction():
            taken = await self.store.take_inbound(inbound.id)
            if taken is None:
                return False
            await self.store.finish_inbound(inbound.id, status="ignored")
            following = taken.following
        self.metrics.handled(inbound.platform, "ignored")
        if following is not None:
            self.next_in_thread(following)
        return True

    async def _prior(self, conversation: Conversation, message: Message) -> list[PriorContact]:
        """The customer's other conversations within the repeat-contact window."""
        window = timedelta(days=self.policy.repeat_contact.window_days)
        return await self.store.prior_contacts(message.platform, message.author.id, since=message.at - window,
                                               exclude=conversation.id)

    async def _decide(self, conversation: Conversation, message: Message,
                      **options: Any) -> tuple[Decision, list[Action]]:
        """The engine's decision, on a worker thread: the event loop keeps acknowledging meanwhile, and the
        embedding model (onnxruntime releases the GIL) runs beside it on another core."""
        with self.metrics.deciding():
            return await asyncio.to_thread(self.engine.decide, conversation, message, **options)

    async def _failed(self, inbound: Inbound, exc: BaseException) -> bool:
        """Count a failed attempt at an inbox row; it stays pending for a retry (or, in the end, failed)."""
        try:
            return await self.store.inbound_failed(inbound.id, f"{type(exc).__name__}: {exc}")
        except Exception:  # the database is down too: the row stays pending, and is retried
            return False

    async def _edit(self, message: Message, bound: structlog.typing.FilteringBoundLogger,
                    hints: Hints | None) -> Outcome:
        conversation = await self.store.find_conversation(message.platform, message.workspace, message.channel,
                                                          message.thread or message.event_id)
        if conversation is None or not message.from_customer:
            return Outcome(ignored="edit outside a customer conversation")
        decision = await asyncio.to_thread(functools.partial(
            self.engine.triage, message.text, organisation=message.author.organisation, now=message.at,
            zone=message.author.timezone, guard=False))
        raises = decision.escalate and (
            conversation.state in (ConversationState.open, ConversationState.gathering)
            or conversation.severity is None or decision.severity > conversation.severity)
        if not raises:
            bound.info("edit_ignored", conversation_id=conversation.id)
            return Outcome(conversation=conversation, ignored="the edit raises no risk")
        return await self._from_customer(message, bound, hints)

    async def _from_company(self, message: Message, bound: structlog.typing.FilteringBoundLogger) -> Outcome:
        conversation = await self.store.find_conversation(message.platform, message.workspace, message.channel,
                                                          message.thread or message.event_id)
        if conversation is None:
            return Outcome(ignored="a staff message outside any customer conversation")
        await self.store.record_message(conversation.id, message)
        if message.author.role is Role.staff and conversation.state not in (ConversationState.claimed,
                                                                            ConversationState.resolved):
            # A member of the company replying in the customer's thread has taken over.
            won, _owner = await self.store.claim(conversation.id, message.author.id)
            bound.info("staff_took_over", conversation_id=conversation.id, staff=message.author.id, won=won)
            if (pending := await self.store.pending_draft(conversation.id)) is not None:
                # a person answered in the thread: the draft is settled as their answer (never sent after it)
                ratio = autonomy.edit_ratio(pending["text"], message.text)
                if await self.store.decide_draft(pending["id"], status="answered", by=message.author.id,
                                                 final_text=message.text, edit_ratio=ratio):
                    await self._judged(pending["intent"], conversation.id)
            if won and await self.store.handoff(conversation.id) is not None:
                queued = await self._enqueue(conversation.id, [
                    CardUpdate(), Note(text="replied in the customer's thread and took over", actor=message.author.id)],
                    source=f"takeover:{message.event_id}", wake=False)
                return Outcome(conversation=conversation, queued=tuple(queued))
        return Outcome(conversation=conversation)

    async def _from_customer(self, message: Message, bound: structlog.typing.FilteringBoundLogger,
                             hints: Hints | None) -> Outcome:
        conversation, created = await self.store.conversation_for(message)
        bound = bound.bind(conversation_id=conversation.id)
        if conversation.state is ConversationState.resolved:
            if conversation.awaiting == "csat" and (score := _SCORE.match(message.text)):
                await self.store.record_message(conversation.id, message)
                await self.store.record_csat(conversation.id, int(score.group(1)))
                bound.info("csat", score=int(score.group(1)))
                actions: list[Action] = [Note(text=f"CSAT from the customer: {score.group(1)}/5"), CardUpdate()]
                if thanks := self.policy.notices.csat_thanks:
                    actions.insert(0, Reply(text=thanks))
                if int(score.group(1)) <= 2 and self.policy.review.enabled:  # a person looks at what happened
                    review = await self.store.add_review(
                        conversation.id, reason="csat", intent=conversation.intent or "other",
                        text=f"CSAT {score.group(1)}/5 from {message.author.name or message.author.id}")
                    actions.append(ReviewItem(review_id=review, reason="csat",
                                              text=f"CSAT {score.group(1)}/5 after this conversation"))
                queued = await self._enqueue(conversation.id, actions, source=f"csat:{message.event_id}", wake=False)
                return Outcome(conversation=conversation, actions=actions, state=ConversationState.resolved,
                               queued=tuple(queued))
            # A new customer message after "resolved" reopens the conversation, as a fresh start: a
            # new handoff gets a new card and a new owner.
            await self.store.reopen(conversation.id, actor=message.author.id)
            conversation = _reopened(conversation)

        prior = await self._prior(conversation, message)
        decision, actions = await self._decide(conversation, message, prior=prior)
        opinion = hints.opinion if hints is not None else None
        if opinion is not None and (opinion.signals or opinion.answer):
            decision, actions = await self._decide(conversation, message, prior=prior, extra=opinion.signals,
                                                  grounded=opinion.answer)
        decision, actions, supervised = await self._supervised(conversation, message, decision, actions)
        decision, actions = self._for_trainees(decision, actions)
        brief, first = None, False
        if any(a.kind == "open_handoff" for a in actions):
            first = await self.store.handoff(conversation.id) is None
            brief = await self._brief(conversation, decision, message, actions)
            if supervised is not None:  # the card shows the bot's answer, and Send to customer starts from it
                brief = brief.model_copy(update={"draft": supervised[1].text})
            if first and hints is not None and hints.note is not None:
                brief = self._with_note(brief, hints.note, conversation)
            actions = [a.model_copy(update={"brief": brief.model_dump(mode="json")})
                       if isinstance(a, OpenHandoff) else a for a in actions]
            if first:  # the transcript so far follows the card as replies in its thread
                actions += [Note(text=f"{line.author} ({line.role}): {line.text}") for line in brief.transcript]
            else:  # raised while handed over: the card shows the new brief
                actions.append(CardUpdate())
        state, queued = await self.store.save_turn(conversation, message, decision, actions,
                                                   policy_version=self.policy.meta.version)
        if supervised is not None:
            mode, answer = supervised
            await self.store.add_draft(conversation.id, intent=decision.intent, mode=mode, text=answer.text,
                                       citations=answer.citations, route=decision.route)
        queued += await self._sample(conversation, message, decision, actions, supervised=supervised is not None,
                                     new_handoff=brief is not None and first)
        bound.info("decided", intent=decision.intent, escalate=decision.escalate, severity=str(decision.severity),
                   route=decision.route, rules=list(decision.rules), created=created)
        for action in actions:
            if action.kind == "hold":
                bound.warning("reply_held_by_guard", problems=list(action.problems))
        return Outcome(conversation=conversation, decision=decision, actions=actions, brief=brief, state=state,
                       queued=tuple(queued))

    async def _supervised(self, conversation: Conversation, message: Message, decision: Decision,
                          actions: list[Action]) -> tuple[Decision, list[Action], tuple[Mode, Reply] | None]:
        """An answer from the help center goes out only if its intent has earned ``auto``. In ``draft``
        mode it waits on the handoff card for a person's approval (the customer is told a teammate is
        checking it); in ``shadow`` mode a person answers and the bot's answer is kept to measure
        agreement. Anything else the engine decided stands."""
        answer = next((a for a in actions if isinstance(a, Reply) and a.citations), None)
        if answer is None or decision.escalate or decision.intent not in self.policy.intents:
            return decision, actions, None
        mode = (await autonomy.modes(self.store, self.policy))[decision.intent]
        if mode == "auto":
            return decision, actions, None
        if mode == "draft":
            previous = conversation.last_reply
            notice = next((n for n in self.policy.notices.checking if n != previous), self.policy.notices.checking[0])
        else:
            notice = self.engine.handoff_notice(decision.severity, now=message.at,
                                                zone=message.author.timezone or conversation.customer.timezone)
        route = self.policy.intents[decision.intent].route
        rules = (*decision.rules, f"autonomy.{mode}")
        decision = decision.model_copy(update={"escalate": True, "route": route, "rules": rules, "reply": notice,
                                               "citations": ()})
        kept = [Reply(text=notice) if action is answer else action for action in actions]
        return decision, [OpenHandoff(route=route, severity=decision.severity, reasons=rules), *kept], (mode, answer)

    async def _sample(self, conversation: Conversation, message: Message, decision: Decision,
                      actions: list[Action], *, supervised: bool, new_handoff: bool) -> list[int]:
        """Put this turn in the QA review queue when the policy picks it: a share of the answers sent on their
        own, every low-confidence decision, every guard hold, every new handoff, every repeat contact."""
        rules = self.policy.review
        if not rules.enabled:
            return []
        said = f"Customer: {message.text[:400]}"
        picks: list[tuple[str, str, str | None]] = []
        answer = next((a for a in actions if isinstance(a, Reply) and a.citations), None)
        if answer is not None and not supervised and sampled(f"{conversation.id}:{message.event_id}", rules.auto_share):
            picks.append(("auto_answer", f"{said}\nBaton: {answer.text[:600]}", answer.citations[0]))
        if decision.confidence < rules.low_confidence:
            picks.append(("low_confidence", f"{said}\nRead as {decision.intent} at {decision.confidence:.2f}", None))
        if held := next((a for a in actions if isinstance(a, Hold)), None):
            picks.append(("hold", f"{said}\nHeld: {held.text[:400]} ({'; '.join(held.problems)})", None))
        if new_handoff:
            picks.append(("handoff", f"{said}\nHanded to {decision.route}: {', '.join(decision.rules)}", None))
        if any(rule.startswith("repeat_contact.") for rule in decision.rules):
            picks.append(("repeat_contact", f"{said}\nThe customer came back about {decision.intent}", None))
        items: list[Action] = []
        for reason, text, article in picks:
            review = await self.store.add_review(conversation.id, reason=reason, intent=decision.intent, text=text,
                                                 article=article)
            items.append(ReviewItem(review_id=review, reason=reason, text=text))
        return await self._enqueue(conversation.id, items, source=f"review:{message.event_id}", wake=False) \
            if items else []

    async def tag_review(self, review_id: int, who: str, tag: str, note: str | None = None) -> Tagged:
        """A person's verdict on a review item. A harmful tag demotes the intent at once; a tag that blames
        the help center names the policy's help-center owner and the article, so it is fixed where it lives."""
        rules = self.policy.review
        if tag not in rules.tags:
            return Tagged(problems=[f"{tag!r} is not one of the tags: {', '.join(rules.tags)}"])
        item = await self.store.review(review_id)
        if item is None:
            return Tagged(problems=["this review item is not in Baton's records"])
        if not await self.store.tag_review(review_id, tag=tag, by=who, note=note):
            return Tagged(problems=["this item was already tagged"])
        harmful = tag in rules.harmful or (tag in rules.harmful_when_sensitive and item["intent"] in rules.sensitive)
        await self._judged(item["intent"], item["conversation_id"], harmful=tag if harmful else None)
        log.info("review_tagged", review_id=review_id, tag=tag, staff=who, intent=item["intent"], harmful=harmful)
        if tag in rules.knowledge:
            return Tagged(owner=rules.knowledge_owner, article=item["article"])
        return Tagged()

    def _for_trainees(self, decision: Decision, actions: list[Action]) -> tuple[Decision, list[Action]]:
        """A new handoff fit for a new hire (the policy's trainee intents, at most its severity) goes to the
        trainee route; the route it would have had is kept, to move up to when nobody claims it in time."""
        trainee = self.policy.trainee
        handoff = next((a for a in actions if isinstance(a, OpenHandoff)), None)
        if trainee.route is None or handoff is None or decision.intent not in trainee.intents \
                or handoff.severity > trainee.max_severity or handoff.route == trainee.route:
            return decision, actions
        regular = handoff.route
        moved = handoff.model_copy(update={"route": trainee.route,
                                           "reasons": (*handoff.reasons, f"trainee.{regular}")})
        rules = (*decision.rules, f"trainee.{regular}")
        decision = decision.model_copy(update={"route": trainee.route, "rules": rules})
        return decision, [moved if action is handoff else action for action in actions]

    async def _brief(self, conversation: Conversation, decision: Decision, message: Message,
                     actions: list[Action]) -> Brief:
        """The brief as it will stand once this turn is stored: the transcript so far, this message
        and what the bot says now."""
        lines = [Line(role=Role(r["role"]), author=r["author_name"] or r["author_id"], text=r["text"], at=r["at"])
                 for r in await self.store.transcript(conversation.id)]
        lines.append(Line(role=Role.customer, author=message.author.name or message.author.id, text=message.text,
                          at=message.at))
        lines += [Line(role=Role.bot, author="Baton", text=a.text, at=message.at)
                  for a in actions if a.kind in ("reply", "ask_details")]
        return build_brief(self.policy, conversation, decision, lines, opened_at=message.at)

    # ---- the language model's part (it only ever adds; on any failure the offline decision stands) ----

    async def _consult(self, message: Message) -> Hints:
        """Ask the model before the turn's transaction, on the conversation as it stands:
        its second opinion and, when the turn will open a handoff, its note for the brief. The turn then
        decides again inside its transaction, with these as inputs."""
        assert self.llm is not None
        # The conversation is opened first (its own short transaction), so the model's calls are stored
        # against it.
        conversation, _created = await self.store.conversation_for(message)
        if conversation.state is ConversationState.resolved:
            if conversation.awaiting == "csat" and _SCORE.match(message.text):
                return Hints()
            conversation = _reopened(conversation)
        prior = await self._prior(conversation, message)
        decision, actions = await self._decide(conversation, message, prior=prior)
        deadline = asyncio.get_running_loop().time() + self.first_reply
        opinion = await self._opinion(conversation, message, decision, deadline)
        if opinion is not None and (opinion.signals or opinion.answer):
            decision, actions = await self._decide(conversation, message, prior=prior, extra=opinion.signals,
                                                  grounded=opinion.answer)
        note = None
        if any(a.kind == "open_handoff" for a in actions) and await self.store.handoff(conversation.id) is None:
            brief = await self._brief(conversation, decision, message, actions)
            note = await self._note(brief, deadline)
        return Hints(opinion=opinion, note=note)

    async def _opinion(self, conversation: Conversation, message: Message, decision: Decision,
                       deadline: float) -> Opinion | None:
        assert self.llm is not None
        owned = conversation.state in (ConversationState.escalated, ConversationState.claimed)
        passages = [] if owned else self.engine.passages_for_model(message.text, decision)
        try:
            async with asyncio.timeout_at(deadline):
                return await self.llm.opinion(message.text, passages, conversation_id=conversation.id)
        except TimeoutError:
            log.warning("llm_deadline", conversation_id=conversation.id, seconds=self.first_reply,
                        fallback="offline engine")
            self.metrics.fallback("deadline")
            return None

    async def _note(self, brief: Brief, deadline: float) -> HandoffNote | None:
        """The model's summary of a handoff (goal, timeline, what was tried, next step, a draft reply)."""
        assert self.llm is not None
        data = {"customer": brief.customer, "route": brief.route, "severity": brief.severity,
                "why_now": brief.why_now, "details": {k: v for k, v in brief.details.items() if v},
                "conversation": _within_budget(brief.transcript)}
        try:
            async with asyncio.timeout_at(deadline):
                return await self.llm.handoff_note(data, conversation_id=brief.conversation_id)
        except TimeoutError:
            log.warning("llm_deadline", conversation_id=brief.conversation_id, use="handoff")
            self.metrics.fallback("deadline")
            return None

    def _with_note(self, brief: Brief, note: HandoffNote, conversation: Conversation) -> Brief:
        """The brief with the model's summary fields (the customer's urgent words stay theirs), and for
        an assisted intent the model's draft reply, for a person to approve (if the guard lets it through)."""
        assisted = any(rule.startswith("tier.") and rule.endswith(".assisted") for rule in brief.rules)
        draft = note.draft.strip()
        return brief.model_copy(update={"goal": note.goal[:300] or brief.goal, "timeline": note.timeline[:12],
                                        "tried": note.tried[:12], "next_step": note.next_step or brief.next_step,
                                        "written_by": self.llm.model if self.llm is not None else None,
                                        "draft": draft if assisted and draft and not self.check_staff_text(
                                            conversation, draft) else None})

    # ---- staff actions on a handoff ----

    async def claim(self, conversation_id: str, who: str) -> ClaimResult:
        """First click wins, atomically in the store. The winner's claim redraws the card."""
        won, owner = await self.store.claim(conversation_id, who)
        log.info("claim", conversation_id=conversation_id, staff=who, won=won, owner=owner)
        if won:
            await self._enqueue(conversation_id, [CardUpdate()], source=f"claim:{conversation_id}:{uuid.uuid4()}")
        return ClaimResult(won=won, owner=owner)

    async def loop_in(self, conversation_id: str, route: str, who: str) -> bool:
        """Mention ``route``'s group in the internal thread, once, and record who did it and when."""
        if route not in self.policy.routes:
            raise ValueError(f"unknown route {route!r}")
        if not await self.store.loop_in(conversation_id, route, who):
            return False
        label = self.policy.routes[route].label or route
        await self._enqueue(conversation_id, [Note(text=f"looped in {label}", route=route, actor=who), CardUpdate()],
                            source=f"loop:{conversation_id}:{route}")
        return True

    def check_staff_text(self, conversation: Conversation, text: str) -> list[str]:
        """The guard's objections to a staff message (empty = it may be sent)."""
        problems = self.engine.guard.check(text, customer_name=conversation.customer.name)
        return [str(p) for p in problems if p.kind in STAFF_GUARD]

    async def draft(self, conversation_id: str) -> str | None:
        """The bot's draft for a staff reply, when there is one: the latest reply the guard held, else
        the language model's draft from the handoff (if the guard lets it through)."""
        pending = await self.store.pending_draft(conversation_id)
        if pending is not None:
            return str(pending["text"])
        held = await self.store.held_actions(conversation_id)
        if held:
            return str(held[-1]["payload"]["text"])
        conversation = await self.store.get_conversation(conversation_id)
        for call in reversed(await self.store.llm_calls_of(conversation_id, use="handoff")):
            text = str((call["output"] or {}).get("draft") or "").strip()
            if call["ok"] and text and conversation is not None and not self.check_staff_text(conversation, text):
                return text
        return None

    async def send_to_customer(self, conversation_id: str, who: str, name: str | None, text: str,
                               *, source: str | None = None) -> list[str]:
        """Queue a staff message for the customer's thread, under the staff member's name.

        Returns the guard's objections; nothing is queued unless the list is empty. Sending claims an
        unclaimed conversation for the sender.
        """
        conversation = await self.store.get_conversation(conversation_id)
        if conversation is None:
            return [f"no conversation {conversation_id}"]
        if problems := self.check_staff_text(conversation, text):
            return problems
        if conversation.claimed_by is None:
            await self.claim(conversation_id, who)
        decided = False
        if (pending := await self.store.pending_draft(conversation_id)) is not None:
            ratio = autonomy.edit_ratio(pending["text"], text)
            status = "answered" if pending["mode"] == "shadow" else "approved" if ratio == 0 else "edited"
            decided = await self.store.decide_draft(pending["id"], status=status, by=who, final_text=text,
                                                    edit_ratio=ratio)
            if decided:
                await self._judged(pending["intent"], conversation_id)
        now = datetime.now(UTC)
        await self.store.record_message(conversation_id, Message(
            platform=conversation.platform, workspace=conversation.workspace, channel=conversation.channel,
            thread=conversation.thread, author=Person(id=who, name=name, role=Role.staff), text=text, at=now,
            event_id=source or f"send:{uuid.uuid4()}"))
        await self._enqueue(conversation_id, [StaffReply(text=text, author_id=who, author_name=name),
                                              Note(text=f"sent to the customer: {text}", actor=who),
                                              *([CardUpdate()] if decided else [])],  # the card shows the draft
                            source=source or f"send:{uuid.uuid4()}")
        return []

    def next_tier(self, route: str | None) -> str | None:
        """The route a conversation on ``route`` is escalated to (the policy's ``escalates_to``), if any."""
        return self.policy.routes[route].escalates_to if route in self.policy.routes else None

    async def escalate_tier(self, conversation_id: str, who: str) -> list[str]:
        """Move a handoff to the next tier (``escalates_to`` of its route): the next group is mentioned in
        the internal thread, the conversation is unclaimed for them with a new SLA timer, and who moved
        it (and who owned it) is kept. The customer is not asked anything again."""
        conversation = await self.store.get_conversation(conversation_id)
        if conversation is None or conversation.route is None:
            return ["no handoff to escalate in this conversation"]
        upper = self.next_tier(conversation.route)
        if upper is None:
            return [f"{conversation.route} is the last tier: there is no one to escalate to"]
        severity = conversation.severity or self.policy.escalation.min_severity
        label = self.policy.routes[upper].label or upper
        moved = await self.store.move_route(
            conversation_id, from_route=conversation.route, to_route=upper, actor=who,
            due=self.policy.sla_due(severity, datetime.now(UTC)),
            actions=[Note(text=f"escalated this to {label}; everything the customer said is above", route=upper,
                          actor=who), CardUpdate()],
            source=f"tier:{conversation_id}:{conversation.route}:{upper}")
        if not moved:
            return ["this conversation was already moved on, or is resolved"]
        log.info("escalated_tier", conversation_id=conversation_id, staff=who, route=upper)
        self.wake()
        return []

    async def mark_unneeded(self, conversation_id: str, who: str) -> list[str]:
        """A person says this handoff was not needed (the bot could have answered): stored as a review item
        tagged ``unnecessary escalation``, which escalation accuracy counts, and said in the internal thread."""
        from bot.reports import UNNEEDED as tag  # the tag the reports read

        conversation = await self.store.get_conversation(conversation_id)
        if conversation is None or conversation.route is None:
            return ["no handoff in this conversation"]
        if tag not in self.policy.review.tags:
            return [f"the policy's review tags have no {tag!r}"]
        if any(r["conversation_id"] == conversation_id and r["tag"] == tag
               for r in await self.store.reviews_of(reason="unneeded")):
            return ["this handoff was already marked as not needed"]
        transcript = await self.store.transcript(conversation_id)
        asked = next((line["text"] for line in transcript if line["role"] == Role.customer.value), "")
        review = await self.store.add_review(conversation_id, reason="unneeded",
                                             intent=conversation.intent or self.policy.default_intent, text=asked)
        tagged = await self.tag_review(review, who, tag)
        if tagged.problems:
            return tagged.problems
        await self._enqueue(conversation_id, [Note(text="marked this handoff as not needed", actor=who)],
                            source=f"unneeded:{conversation_id}")
        return []

    async def approve_draft(self, conversation_id: str, who: str, name: str | None) -> list[str]:
        """Send the bot's pending draft as it is (in the bot's voice, or under the approver's name if the
        policy says so). Returns why it was not sent (nothing waiting, someone was first, the guard)."""
        conversation = await self.store.get_conversation(conversation_id)
        pending = await self.store.pending_draft(conversation_id)
        if conversation is None or pending is None:
            return [await self._no_pending(conversation_id)]
        text = str(pending["text"])
        if problems := self.check_staff_text(conversation, text):
            return problems
        async with self.store.transaction():  # decided and queued together, or neither
            problems = await self._approve(conversation, pending, who, name, text)
        if not problems:
            self.wake()
        return problems

    async def _approve(self, conversation: Conversation, pending: dict[str, Any], who: str, name: str | None,
                       text: str) -> list[str]:
        conversation_id = conversation.id
        if not await self.store.decide_draft(pending["id"], status="approved", by=who, final_text=text, edit_ratio=0.0):
            return ["someone else already decided on this draft"]
        if conversation.claimed_by is None:
            await self.store.claim(conversation_id, who)  # the card update below shows the owner too
        source = f"approve:{pending['id']}"
        if self.policy.autonomy.show_approver:
            reply: Action = StaffReply(text=text, author_id=who, author_name=name)
            author = Person(id=who, name=name, role=Role.staff)
        else:
            reply = Reply(text=text, citations=tuple(pending["citations"] or ()))
            author = Person(id="baton", name="Baton", role=Role.bot)
        await self.store.record_message(conversation_id, Message(
            platform=conversation.platform, workspace=conversation.workspace, channel=conversation.channel,
            thread=conversation.thread, author=author, text=text, at=datetime.now(UTC), event_id=source))
        await self._enqueue(conversation_id, [reply, Note(text="approved the bot's draft and sent it", actor=who),
                                              CardUpdate()], source=source, wake=False)
        await self._judged(pending["intent"], conversation_id)
        return []

    async def reject_draft(self, conversation_id: str, who: str, reason: str) -> list[str]:
        """Reject the bot's pending draft for one of the policy's reasons; the conversation stays with
        people, as any handoff."""
        if reason not in self.policy.autonomy.reject_reasons:
            return [f"{reason!r} is not one of the reasons: {', '.join(self.policy.autonomy.reject_reasons)}"]
        pending = await self.store.pending_draft(conversation_id)
        if pending is None:
            return [await self._no_pending(conversation_id)]
        async with self.store.transaction():  # decided and queued together, or neither
            if not await self.store.decide_draft(pending["id"], status="rejected", by=who, reason=reason):
                return ["someone else already decided on this draft"]
            await self._enqueue(conversation_id, [Note(text=f"rejected the bot's draft: {reason}", actor=who),
                                                  CardUpdate()], source=f"reject:{pending['id']}", wake=False)
            await self._judged(pending["intent"], conversation_id,
                               harmful=reason if reason in self.policy.autonomy.harmful else None)
        self.wake()
        return []

    async def _no_pending(self, conversation_id: str) -> str:
        """Why there is no draft to act on: someone was first (the same words whichever way the race went),
        or there never was one."""
        handoff = await self.store.handoff(conversation_id)
        if handoff is not None and handoff.draft is not None:
            return "someone else already decided on this draft"
        return "no draft is waiting for approval in this conversation"

    async def _judged(self, intent: str, conversation_id: str, *, harmful: str | None = None) -> None:
        """A person judged one of ``intent``'s drafts or answers: its autonomy may change (see
        :mod:`bot.autonomy`). The leads are told once per change or proposal, with the figures."""
        if intent not in self.policy.intents:
            return
        change = await autonomy.review(self.store, self.policy, intent, harmful=harmful)
        if change is None:
            return
        log.info("autonomy_changed" if change.confirmed else "autonomy_promotion_proposed", intent=intent,
                 mode=change.mode, previous=change.previous, why=change.why, **change.figures.as_dict())
        changes = len(await self.store.autonomy_changes(intent))
        await self._enqueue(conversation_id, [AutonomyNotice(
            intent=intent, mode=change.mode, previous=change.previous, why=change.why, confirmed=change.confirmed,
            figures=change.figures.as_dict())], source=f"autonomy:{intent}:{change.previous}:{change.mode}:{changes}")

    async def promote(self, intent: str, who: str, *, from_mode: str | None = None) -> list[str]:
        """A lead confirms ``intent``'s proposed promotion (the Promote button, or ``python -m bot autonomy
        --promote``). Returns why not, when the figures no longer call for it."""
        if intent not in self.policy.intents:
            return [f"no intent {intent!r} in the policy"]
        try:
            change = await autonomy.promote(self.store, self.policy, intent, by=who, from_mode=from_mode)
        except ValueError as exc:
            return [str(exc)]
        log.info("autonomy_changed", intent=intent, mode=change.mode, previous=change.previous, by=who)
        return []

    async def resolve(self, conversation_id: str, who: str) -> bool:
        """Close the conversation, and ask the customer the CSAT question if the policy has one."""
        question = self.policy.notices.csat
        if not await self.store.resolve(conversation_id, who, awaiting_csat=bool(question)):
            return False
        actions: list[Action] = [CardUpdate()]
        if question:
            actions.append(Reply(text=question))
        await self._enqueue(conversation_id, actions, source=f"resolve:{conversation_id}:{uuid.uuid4()}")
        return True

    # ---- timers ----

    async def check_sla(self, now: datetime | None = None) -> int:
        """Re-ping every unclaimed handoff past its SLA and move it up a route. Returns how many."""
        now = now or datetime.now(UTC)
        moved = 0
        for conversation in await self.store.overdue(now):
            handoff = await self.store.handoff(conversation.id)
            if handoff is None or handoff.sla_due is None:
                continue
            current = handoff.sla_route or conversation.route or "support"
            upper = self._regular_route(handoff) if current == self.policy.trainee.route else None
            upper = upper or self.policy.routes[current].escalates_to
            severity = conversation.severity or self.policy.escalation.min_severity
            minutes = self.policy.sla_minutes[str(severity)]
            target = upper or current
            due = self.policy.sla_due(severity, now) if upper else None
            text = (f"unclaimed past its {minutes}-minute SLA: moving up to "
                    f"{self.policy.routes[target].label or target}" if upper
                    else f"still unclaimed past its {minutes}-minute SLA")
            if await self.store.escalate_sla(conversation.id, seen_due=handoff.sla_due, route=target, due=due,
                                             actions=[Note(text=text, route=target), CardUpdate()]):
                moved += 1
                log.warning("sla_breached", conversation_id=conversation.id, route=target, severity=str(severity))
        if moved:
            self.wake()
        return moved

    def _regular_route(self, handoff: Handoff) -> str | None:
        """The route a trainee's handoff would have had (kept in its rules as ``trainee.<route>``)."""
        rules = [str(r) for r in handoff.brief.get("rules") or ()]
        found = next((r.split(".", 1)[1] for r in reversed(rules) if r.startswith("trainee.")), None)
        return found if found in self.policy.routes else None

    def delivered(self, parcel: Parcel, result: dict[str, object] | None) -> Card | None:
        """What a delivery changes besides its row (the courier stores it with the row): a posted card is
        the internal thread, and starts the SLA timer."""
        action = parcel.action
        if isinstance(action, OpenHandoff) and result and result.get("card_ts"):
            return Card(conversation_id=parcel.conversation.id, channel=str(result["card_channel"]),
                        ts=str(result["card_ts"]), sla_route=action.route,
                        sla_due=self.policy.sla_due(action.severity, datetime.now(UTC)))
        return None

    async def _enqueue(self, conversation_id: str, actions: list[Action], *, source: str,
                       wake: bool = True) -> list[int]:
        queued = await self.store.enqueue(conversation_id, actions, source=source)
        if wake:
            self.wake()
        return queued


def _reopened(conversation: Conversation) -> Conversation:
    """A resolved conversation as a new customer message reopens it: open, no owner, nothing awaited."""
    return conversation.model_copy(update={"state": ConversationState.open, "awaiting": None, "claimed_by": None,
                                           "asked": ()})


def thread_of(message: Message) -> str:
    """The inbox's ordering key of a message: its thread."""
    return thread_key(message.platform, message.workspace, message.channel, message.thread or message.event_id)


def _within_budget(lines: list[Line], chars: int = 5000, per_line: int = 400) -> list[str]:
    """The transcript as the model sees it for a brief: the first customer message, then as many of the
    latest lines as fit in ``chars`` (about 1,250 tokens), each cut at ``per_line`` characters."""
    shown = [f"{line.author} ({line.role}): {line.text[:per_line]}" for line in lines]
    if not shown:
        return []
    kept: list[str] = []
    room = chars - len(shown[0])
    for text in reversed(shown[1:]):
        if room - len(text) < 0:
            break
        kept.append(text)
        room -= len(text)
    skipped = len(shown) - 1 - len(kept)
    return [shown[0], *([f"[{skipped} earlier messages left out]"] if skipped else []), *reversed(kept)]
