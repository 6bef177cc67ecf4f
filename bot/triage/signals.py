"""Risk signals: the policy's lexicon rules run over the customer's text, with verbatim evidence.

Rules are regular expressions from the policy file. A negatable rule is cancelled by a negator
("no", "not", "never", ...) standing just before its match in the same clause, so that "no refund
needed" and "not a big deal" do not fire. Weak cues (severity ``low``) are recorded; several distinct
weak cues of one kind add up to a ``medium`` signal, so that "!!" alone is not an escalation but
"STILL BROKEN!!! third time" is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.model import Severity, Signal
from bot.policy import Policy, Rule

# A clause ends at sentence punctuation or a contrastive conjunction; a negator before that does
# not reach the match ("I don't mind, but you charged me twice").
_CLAUSE_BREAK = re.compile(r"[.;:!?,\n]|\b(?:but|however|although|though|yet)\b", re.I)
_NEGATION_REACH = 3  # words
_POSSESSIVES = frozenset({"my", "our", "your", "his", "her", "their"})


@dataclass(frozen=True, slots=True)
class Hit:
    kind: str
    rule: Rule
    severity: Severity
    start: int
    end: int
    evidence: str


def _negated(text: str, start: int, policy: Policy) -> bool:
    before = text[max(0, start - 60) : start]
    breaks = list(_CLAUSE_BREAK.finditer(before))
    if breaks:
        before = before[breaks[-1].end() :]
    words = before.split()[-_NEGATION_REACH:]
    if not words or words[-1].lower() in _POSSESSIVES:
        # "why isn't my refund showing": the negator governs the verb, not the customer's thing.
        return False
    return policy.negation_regex.search(" ".join(words)) is not None


def find_hits(text: str, policy: Policy) -> list[Hit]:
    """Every rule that fires on ``text``, with its first un-negated match."""
    hits: list[Hit] = []
    for kind, spec in policy.signals.items():
        for rule in spec.rules:
            for m in rule.regex.finditer(text):
                if m.end() == m.start():
                    continue
                if rule.negatable and _negated(text, m.start(), policy):
                    continue
                severity = rule.severity or spec.severity
                hits.append(Hit(kind, rule, severity, m.start(), m.end(), m.group(0)))
                break
    return hits


def signals_from_hits(text: str, hits: list[Hit], policy: Policy) -> tuple[list[Signal], list[str]]:
    """One signal per kind (its strongest evidence), and the ids of every rule that fired.

    A kind with only weak cues becomes a ``medium`` signal when ``policy.escalation.combine`` or more
    distinct rules fired; its evidence is then the verbatim span from the first cue to the last.
    """
    signals: list[Signal] = []
    fired: list[str] = []
    by_kind: dict[str, list[Hit]] = {}
    for hit in hits:
        by_kind.setdefault(hit.kind, []).append(hit)
        fired.append(hit.rule.id)
    for kind, kind_hits in by_kind.items():
        strongest = max(kind_hits, key=lambda h: (h.severity, -h.start))
        if strongest.severity < policy.escalation.min_severity and len(kind_hits) >= policy.escalation.combine:
            first = min(kind_hits, key=lambda h: h.start)
            last = max(kind_hits, key=lambda h: h.end)
            evidence = text[first.start : last.end]
            if len(evidence) > 160:
                evidence = strongest.evidence
            rule_id = f"{kind}.combined"
            fired.append(rule_id)
            signals.append(Signal(kind=kind, severity=Severity.medium, evidence=evidence, rule=rule_id))
        else:
            signals.append(Signal(kind=kind, severity=strongest.severity, evidence=strongest.evidence,
                                  rule=strongest.rule.id))
    order = list(policy.signals)
    signals.sort(key=lambda s: (-s.severity, order.index(s.kind)))
    return signals, fired


def detect(text: str, policy: Policy) -> tuple[list[Signal], list[str]]:
    return signals_from_hits(text, find_hits(text, policy), policy)
