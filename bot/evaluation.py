"""Scoring the detectors on labelled messages (``python -m bot eval``).

Rows are shaped like ``../shared/eval/dev_messages.jsonl``: ``{"id", "text", "category", "source"?}``
with ``category`` either ``escalate:<kind>`` or a calm one (``simple_question``, ``other``). Per
category it reports the escalation rate (recall, on escalate rows; false alarms, on calm rows) and
the right-kind rate (the expected signal kind was among the signals).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from bot.model import Decision, Severity

CALM = ("simple_question", "other")


class LabelledRow(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | int | None = None
    text: str
    category: str
    source: str | None = None


@dataclass
class Cell:
    n: int = 0
    escalated: int = 0
    right_kind: int = 0
    high_risk: int = 0
    """Rows with any signal of severity high or critical."""

    def rate(self, count: int) -> float:
        return count / self.n if self.n else 0.0


@dataclass
class Report:
    by_category: dict[str, Cell] = field(default_factory=dict)
    by_source: dict[tuple[str, str], Cell] = field(default_factory=dict)

    def add(self, row: LabelledRow, decision: Decision) -> None:
        kind = row.category.split(":", 1)[1] if row.category.startswith("escalate:") else None
        right = kind is not None and any(s.kind == kind for s in decision.signals)
        high_risk = any(s.severity >= Severity.high for s in decision.signals)
        cells = [self.by_category.setdefault(row.category, Cell())]
        if row.source:
            cells.append(self.by_source.setdefault((row.category, source_group(row.source)), Cell()))
        for cell in cells:
            cell.n += 1
            cell.escalated += decision.escalate
            cell.right_kind += right
            cell.high_risk += high_risk

    @property
    def calm(self) -> Cell:
        total = Cell()
        for category in CALM:
            cell = self.by_category.get(category)
            if cell:
                total.n += cell.n
                total.escalated += cell.escalated
                total.high_risk += cell.high_risk
        return total

    def as_dict(self) -> dict[str, object]:
        def cell(c: Cell) -> dict[str, object]:
            return {"n": c.n, "escalation_rate": round(c.rate(c.escalated), 4),
                    "right_kind_rate": round(c.rate(c.right_kind), 4)}
        return {
            "categories": {k: cell(v) for k, v in sorted(self.by_category.items())},
            "sources": {f"{k[0]} | {k[1]}": cell(v) for k, v in sorted(self.by_source.items())},
            "calm_false_alarm_rate": round(self.calm.rate(self.calm.escalated), 4),
            "calm_high_risk_signal_rate": round(self.calm.rate(self.calm.high_risk), 4),
        }

    def lines(self, *, by_source: bool = True) -> Iterable[str]:
        yield f"{'category':<24} {'n':>5} {'escalated':>10} {'right kind':>11}"
        for category, c in sorted(self.by_category.items()):
            right = f"{c.rate(c.right_kind):>11.3f}" if category.startswith("escalate:") else f"{'-':>11}"
            yield f"{category:<24} {c.n:>5} {c.rate(c.escalated):>10.3f} {right}"
        calm = self.calm
        calm_rows = ", ".join(CALM)
        yield f"false alarms on calm rows ({calm_rows}): {calm.escalated}/{calm.n} = {calm.rate(calm.escalated):.3f}"
        yield (f"calm rows with a high-risk signal (high or critical): {calm.high_risk}/{calm.n}"
               f" = {calm.rate(calm.high_risk):.3f}")
        if by_source and self.by_source:
            yield ""
            yield f"{'category | source':<50} {'n':>5} {'escalated':>10} {'right kind':>11}"
            for (category, source), c in sorted(self.by_source.items()):
                label = f"{category} | {source}"
                yield f"{label:<50} {c.n:>5} {c.rate(c.escalated):>10.3f} {c.rate(c.right_kind):>11.3f}"


def source_group(source: str) -> str:
    """``banking77:train`` -> ``banking77``; synthetic rows keep their marker."""
    if "(synthetic)" in source:
        return source.split("(", 1)[0] + " (synthetic)"
    return source.split(":", 1)[0]
