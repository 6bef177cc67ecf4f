"""The language-model layer: any OpenAI-compatible endpoint (OpenAI, Azure OpenAI, vLLM, Ollama, ...).

The offline engine is the floor; the model can only add to it, never make it less safe:

- a second opinion on each customer message (strict JSON): signals it may add or raise, each with
  the customer's verbatim words, and an answer grounded only in the help-center passages retrieved
  for it, citing them (``prompts/turn.md``);
- on a handoff, the brief's summary fields and a draft reply for staff (``prompts/handoff.md``).

What the model writes is data: it is validated with pydantic, checked against what it was given
(evidence must be in the message, citations among the passages) and never executed. The customer's
text is passed as delimited JSON data. Each call is stored with its prompt's content hash, the model,
tokens and latency. Calls have a timeout, retries with jitter on 429/5xx/timeouts (tenacity), a
token budget per conversation, and a circuit breaker: while the endpoint fails, Baton runs on the
offline engine and says so in the logs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import openai
import structlog
from pydantic import BaseModel, ConfigDict, ValidationError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from bot.knowledge import Article, Grounded
from bot.model import Severity, Signal
from bot.settings import Settings
from bot.store import Store
from bot.web.metrics import NO_METRICS, Metrics

log = structlog.get_logger(__name__)

PROMPTS = Path(__file__).resolve().parent.parent / "prompts"
KINDS = ("frustration", "billing", "data_loss", "churn", "security", "outage", "human_request", "privacy")
MESSAGE_CHARS = 4000
PASSAGE_CHARS = 1500
CHARS_PER_TOKEN = 4  # a conservative estimate for budgets; the endpoint's own count is what is stored

Model = TypeVar("Model", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSignal(_Strict):
    kind: Literal["frustration", "billing", "data_loss", "churn", "security", "outage", "human_request", "privacy"]
    severity: Literal["low", "medium", "high", "critical"]
    evidence: str


class TurnOpinion(_Strict):
    """The model's reading of one customer message (``prompts/turn.md``)."""

    signals: list[ModelSignal]
    answer: str
    citations: list[str]
    known: bool


class HandoffNote(_Strict):
    """The brief's summary fields and a draft reply (``prompts/handoff.md``)."""

    goal: str
    timeline: list[str]
    tried: list[str]
    next_step: str
    draft: str


@dataclass(frozen=True)
class Prompt:
    name: str
    text: str

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]

    @classmethod
    def load(cls, name: str, folder: Path = PROMPTS) -> Prompt:
        return cls(name, (folder / f"{name}.md").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Opinion:
    """What the engine takes from the model: extra signals (checked) and a grounded answer, if any."""

    signals: tuple[Signal, ...] = ()
    answer: Grounded | None = None


class CircuitBreaker:
    """Open after ``threshold`` failures in a row; half-open (one trial call) after ``cooldown`` seconds."""

    def __init__(self, threshold: int = 3, cooldown: float = 60.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self.opened_at: float | None = None

    @property
    def open(self) -> bool:
        return self.opened_at is not None and time.monotonic() - self.opened_at < self.cooldown

    def success(self) -> None:
        if self.opened_at is not None:
            log.warning("llm_endpoint_back", hint="the model is used again")
        self.failures, self.opened_at = 0, None

    def failure(self) -> None:
        self.failures += 1
        if self.failures >= self.threshold and not self.open:
            self.opened_at = time.monotonic()
            log.warning("llm_fallback_offline", failures=self.failures, retry_in_s=self.cooldown,
                        hint="the model endpoint keeps failing: the offline engine answers alone")


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code == 429 or exc.status_code >= 500
    return isinstance(exc, openai.APIConnectionError)  # timeouts included


class LanguageModel:
    """One endpoint, its prompts and its budgets. ``None`` from :meth:`from_settings` when no key is set."""

    def __init__(self, client: openai.AsyncOpenAI, model: str, store: Store | None, *, timeout: float = 8.0,
                 attempts: int = 3, budget: int = 20_000, breaker: CircuitBreaker | None = None,
                 prompts: Path = PROMPTS) -> None:
        self.client = client
        self.model = model
        self.store = store
        self.timeout = timeout
        self.attempts = attempts
        self.budget = budget
        self.breaker = breaker or CircuitBreaker()
        self.prompts = {name: Prompt.load(name, prompts) for name in ("turn", "handoff")}
        self.calls = 0
        self.tokens = 0
        self.metrics: Metrics = NO_METRICS

    @classmethod
    def from_settings(cls, settings: Settings, store: Store | None) -> LanguageModel | None:
        """The configured endpoint; ``store`` keeps every call (``None``: not kept, no budgets, as in eval)."""
        if settings.openai_api_key is None:
            return None
        client = openai.AsyncOpenAI(api_key=settings.openai_api_key.get_secret_value(),
                                    base_url=settings.openai_base_url or None, max_retries=0,
                                    timeout=settings.llm_timeout)
        return cls(client, settings.model, store, timeout=settings.llm_timeout, budget=settings.llm_budget)

    # ---- uses ----

    async def opinion(self, text: str, passages: list[tuple[Article, str]], *,
                      conversation_id: str | None) -> Opinion | None:
        """The second opinion on one customer message (and an answer from ``passages``, when given);
        ``None`` when the model is not available."""
        # Only what this use needs: the message (a pasted log is cut) and the retrieved passages.
        data = {"customer_message": text[:MESSAGE_CHARS],
                "passages": [{"id": a.id, "title": a.title, "text": passage[:PASSAGE_CHARS]}
                             for a, passage in passages]}
        reply = await self._ask("turn", data, TurnOpinion, conversation_id=conversation_id, max_tokens=500)
        if reply is None:
            return None
        return Opinion(signals=tuple(self._checked_signals(text, reply.signals, conversation_id)),
                       answer=self._checked_answer(reply, passages, conversation_id))

    async def handoff_note(self, data: dict[str, Any], *, conversation_id: str) -> HandoffNote | None:
        return await self._ask("handoff", data, HandoffNote, conversation_id=conversation_id, max_tokens=600)

    @staticmethod
    def _checked_signals(text: str, signals: list[ModelSignal], conversation_id: str | None) -> list[Signal]:
        """Only signals whose evidence is the customer's own words, taken from the message itself."""
        kept = []
        lowered = text.lower()
        for signal in signals:
            evidence = signal.evidence.strip()
            at = lowered.find(evidence.lower()) if evidence else -1
            if at < 0:
                log.info("llm_signal_dropped", conversation_id=conversation_id, kind=signal.kind,
                         reason="its evidence is not in the message")
                continue
            kept.append(Signal(kind=signal.kind, severity=Severity[signal.severity],
                               evidence=text[at:at + len(evidence)], rule=f"llm.{signal.kind}"))
        return kept

    @staticmethod
    def _checked_answer(reply: TurnOpinion, passages: list[tuple[Article, str]],
                        conversation_id: str | None) -> Grounded | None:
        if not passages or not reply.known:
            return None
        given = {article.id: article for article, _ in passages}
        cited = list(dict.fromkeys(reply.citations))
        problem = None
        if not reply.answer.strip():
            problem = "empty answer"
        elif not cited:
            problem = "the answer cites nothing"
        elif unknown := [c for c in cited if c not in given]:
            problem = f"it cites articles that were not retrieved: {unknown}"
        if problem is not None:
            log.warning("llm_answer_discarded", conversation_id=conversation_id, reason=problem)
            return None
        return Grounded(text=reply.answer.strip(), articles=tuple(given[c] for c in cited))

    # ---- one call ----

    async def _ask(self, use: str, data: dict[str, Any], schema: type[Model], *, conversation_id: str | None,
                   max_tokens: int) -> Model | None:
        bound = log.bind(conversation_id=conversation_id, use=use)
        if self.breaker.open:
            bound.info("llm_skipped", reason="circuit open: the offline engine answers")
            self.metrics.fallback("circuit_open")
            return None
        content = json.dumps(data, ensure_ascii=False)
        if conversation_id is not None and self.budget and self.store is not None:
            spent = await self.store.llm_tokens(conversation_id)
            if spent + len(content) // CHARS_PER_TOKEN + max_tokens > self.budget:
                bound.info("llm_skipped", reason="the conversation's token budget is spent", spent=spent)
                self.metrics.fallback("budget")
                return None
        prompt = self.prompts[use]
        messages: list[Any] = [
            {"role": "system", "content": prompt.text},
            {"role": "user", "content": f"<data>\n{content}\n</data>"},
        ]
        response_format: Any = {"type": "json_schema", "json_schema": {
            "name": schema.__name__, "strict": True, "schema": schema.model_json_schema()}}
        started = time.perf_counter()
        usage = (0, 0)
        error: str | None = None
        parsed: Model | None = None
        try:
            async with asyncio.timeout(self.timeout):
                async for attempt in AsyncRetrying(retry=retry_if_exception(_retryable), reraise=True,
                                                   stop=stop_after_attempt(self.attempts),
                                                   wait=wait_random_exponential(multiplier=0.25, max=2)):
                    with attempt:
                        response = await self.client.chat.completions.create(
                            model=self.model, messages=messages, response_format=response_format,
                            max_tokens=max_tokens, temperature=0)
            if response.usage is not None:
                usage = (response.usage.prompt_tokens, response.usage.completion_tokens)
            parsed = schema.model_validate_json(response.choices[0].message.content or "")
        except TimeoutError:
            error = f"timed out after {self.timeout:g} s"
        except ValidationError as exc:
            error = f"malformed answer: {exc.error_count()} problem(s), e.g. {exc.errors()[0]['msg']}"
        except (openai.OpenAIError, IndexError) as exc:
            error = f"{type(exc).__name__}: {getattr(exc, 'status_code', '')} {str(exc)[:200]}".strip()
        latency = int((time.perf_counter() - started) * 1000)
        self.calls += 1
        self.tokens += sum(usage)
        self.metrics.model_call(use, ok=parsed is not None, prompt_tokens=usage[0], completion_tokens=usage[1],
                                seconds=latency / 1000)
        if parsed is None:
            self.breaker.failure()
            bound.warning("llm_call_failed", error=error, latency_ms=latency, fallback="offline engine")
        else:
            self.breaker.success()
        if self.store is None:
            return parsed
        await self.store.record_llm_call(
            conversation_id=conversation_id, use=use, prompt=prompt.name, prompt_hash=prompt.hash, model=self.model,
            prompt_tokens=usage[0], completion_tokens=usage[1], latency_ms=latency, ok=parsed is not None,
            error=error, output=parsed.model_dump() if parsed is not None else None)
        return parsed
