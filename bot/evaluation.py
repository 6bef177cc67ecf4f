"""Scoring the detectors on labelled messages (``python -m bot eval``).

Rows are shaped like ``../shared/eval/dev_messages.jsonl``: ``{"id", "text", "category", "source"?}``
with ``category`` either ``escalate:<kind>`` or a calm one (``simple_question``, ``other``). The engine
runs as it does live (with the help center), and every decision is sorted by its outcome:

- a **risk escalation**: handed off because of a risk signal that escalates, or an intent that people
  handle (``tier.<intent>.human``). This is what the escalation rate counts (recall on escalate rows,
  false alarms on calm rows), as when the detectors were scored without the help center, so the
  tables stay comparable;
- a **no-answer handoff**: handed off because the help center had no answer (``knowledge.no_answer``);
- another handoff (e.g. a reply the pre-send guard held, an assisted intent handed to a person);
- a reply; or
- **silent**: no reply and no handoff, which should never happen.

Per category it also reports the right-kind rate (the expected signal kind was among the signals).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict

from bot.model import Decision, Severity
from bot.policy import Policy

CALM = ("simple_question", "other")
NO_ANSWER = "knowledge.no_answer"

Outcome = Literal["risk", "no_answer", "handoff", "reply", "silent"]


class LabelledRow(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | int | None = None
    text: str
    category: str
    source: str | None = None


def outcome_of(decision: Decision, policy: Policy) -> Outcome:
    """What the customer's message ended in (see the module's docstring)."""
    if decision.escalate:
        floor = policy.escalation.min_severity
        for signal in decision.signals:
            spec = policy.signals.get(signal.kind)
            if spec is None or (spec.escalate and signal.severity >= floor):  # engine-made signals always escalate
                return "risk"
        if any(rule.startswith("tier.") and rule.endswith(".human") for rule in decision.rules):
            return "risk"
        return "no_answer" if NO_ANSWER in decision.rules else "handoff"
    return "reply" if decision.reply else "silent"


@dataclass
class Cell:
    n: int = 0
    escalated: int = 0
    """Risk escalations."""
    right_kind: int = 0
    high_risk: int = 0
    """Rows with any signal of severity high or critical."""
    no_answer: int = 0
    """Handed off because the help center had no answer."""
    other_handoff: int = 0
    silent: int = 0
    """No reply and no handoff."""

    def rate(self, count: int) -> float:
        return count / self.n if self.n else 0.0

    def add(self, outcome: Outcome, *, right: bool, high_risk: bool) -> None:
        self.n += 1
        self.escalated += outcome == "risk"
        self.no_answer += outcome == "no_answer"
        self.other_handoff += outcome == "handoff"
        self.silent += outcome == "silent"
        self.right_kind += right
        self.high_risk += high_risk

    def merge(self, other: Cell) -> None:
        for name in ("n", "escalated", "right_kind", "high_risk", "no_answer", "other_handoff", "silent"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Report:
    policy: Policy
    by_category: dict[str, Cell] = field(default_factory=dict)
    by_source: dict[tuple[str, str], Cell] = field(default_factory=dict)

    def add(self, row: LabelledRow, decision: Decision) -> Outcome:
        kind = row.category.split(":", 1)[1] if row.category.startswith("escalate:") else None
        right = kind is not None and any(s.kind == kind for s in decision.signals)
        high_risk = any(s.severity >= Severity.high for s in decision.signals)
        outcome = outcome_of(decision, self.policy)
        cells = [self.by_category.setdefault(row.category, Cell())]
        if row.source:
            cells.append(self.by_source.setdefault((row.category, source_group(row.source)), Cell()))
        for cell in cells:
            cell.add(outcome, right=right, high_risk=high_risk)
        return outcome

    @property
    def calm(self) -> Cell:
        total = Cell()
        for category in CALM:
            if cell := self.by_category.get(category):
                total.merge(cell)
        return total

    @property
    def total(self) -> Cell:
        total = Cell()
        for cell in self.by_category.values():
            total.merge(cell)
        return total

    def as_dict(self) -> dict[str, object]:
        def cell(c: Cell) -> dict[str, object]:
            return {"n": c.n, "escalation_rate": round(c.rate(c.escalated), 4),
                    "right_kind_rate": round(c.rate(c.right_kind), 4),
                    "no_answer_rate": round(c.rate(c.no_answer), 4), "silent": c.silent}
        total = self.total
        return {
            "categories": {k: cell(v) for k, v in sorted(self.by_category.items())},
            "sources": {f"{k[0]} | {k[1]}": cell(v) for k, v in sorted(self.by_source.items())},
            "calm_false_alarm_rate": round(self.calm.rate(self.calm.escalated), 4),
            "calm_high_risk_signal_rate": round(self.calm.rate(self.calm.high_risk), 4),
            "no_answer": {"rows": total.no_answer, "rate": round(total.rate(total.no_answer), 4)},
            "silent": {"rows": total.silent, "rate": round(total.rate(total.silent), 4),
                       "categories": {k: v.silent for k, v in sorted(self.by_category.items())}},
        }

    def lines(self, *, by_source: bool = True) -> Iterable[str]:
        yield f"{'category':<24} {'n':>5} {'escalated':>10} {'right kind':>11} {'no answer':>10} {'silent':>7}"
        for category, c in sorted(self.by_category.items()):
            right = f"{c.rate(c.right_kind):>11.3f}" if category.startswith("escalate:") else f"{'-':>11}"
            yield (f"{category:<24} {c.n:>5} {c.rate(c.escalated):>10.3f} {right} {c.rate(c.no_answer):>10.3f}"
                   f" {c.silent:>7}")
        calm = self.calm
        calm_rows = ", ".join(CALM)
        yield f"false alarms on calm rows ({calm_rows}): {calm.escalated}/{calm.n} = {calm.rate(calm.escalated):.3f}"
        yield (f"calm rows with a high-risk signal (high or critical): {calm.high_risk}/{calm.n}"
               f" = {calm.rate(calm.high_risk):.3f}")
        total = self.total
        yield (f"handed off because the help center had no answer (not counted as escalations): "
               f"{total.no_answer}/{total.n} = {total.rate(total.no_answer):.3f}")
        if total.other_handoff:
            yield (f"handed off for another reason (e.g. a reply the guard held, an assisted intent): "
                   f"{total.other_handoff}/{total.n} = {total.rate(total.other_handoff):.3f}")
        yield f"silent rows (no reply, no handoff): {total.silent}/{total.n} = {total.rate(total.silent):.3f}"
        if by_source and self.by_source:
            yield ""
            yield f"{'category | source':<50} {'n':>5} {'escalated':>10} {'right kind':>11} {'silent':>7}"
            for (category, source), c in sorted(self.by_source.items()):
                label = f"{category} | {source}"
                yield (f"{label:<50} {c.n:>5} {c.rate(c.escalated):>10.3f} {c.rate(c.right_kind):>11.3f}"
                       f" {c.silent:>7}")


def source_group(source: str) -> str:
    """``banking77:train`` -> ``banking77``; synthetic rows keep their marker."""
    if "(synthetic)" in source:
        return source.split("(", 1)[0] + " (synthetic)"
    return source.split(":", 1)[0]
