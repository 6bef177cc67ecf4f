"""Risk signals: the policy's lexicon rules run over the customer's text, with verbatim evidence.

Rules are regular expressions from the policy file, matched on :func:`bot.text.plain` (links,
mentions, emoji codes and markup blanked, same length), so that a link or a mention never looks like
a word; the evidence is the same span of the customer's original text. A negatable rule is cancelled
by a negator ("no", "not", "never", ...) standing just before its match in the same clause, so that
"no refund needed" and "not a big deal" do not fire. Weak cues (severity ``low``) are recorded;
several distinct weak cues of one kind add up to a ``medium`` signal, so that "!!" alone is not an
escalation but "STILL BROKEN!!! third time" is.

On a how-to question (a cue of ``escalation.questions`` matches) emphasis cues (punctuation,
capitals, "urgent") are recorded at ``low`` and weak cues do not add up: "URGENT!! how do I share a
recording??" is a question asked in a hurry, not a complaint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.model import Severity, Signal
from bot.policy import Policy, Rule
from bot.text import plain, verbatim

# A clause ends at sentence punctuation or a contrastive conjunction; a negator before that does
# not reach the match ("I don't mind, but you charged me twice").
_CLAUSE_BREAK = re.compile(r"[.;:!?,\n]|\b(?:but|however|although|though|yet)\b", re.I)
_NEGATION_REACH = 3  # words
_POSSESSIVES = frozenset({"my", "our", "your", "his", "her", "their"})
_MAX_COMBINED = 160  # characters of evidence when weak cues add up
QUESTION_RULE = "escalation.how_to_question"
"""Listed when a how-to question kept emphasis or weak cues from escalating."""


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
    """Every rule that fires on ``text``, with its first un-negated match (evidence from ``text`` itself)."""
    clean = plain(text)
    hits: list[Hit] = []
    for kind, spec in policy.signals.items():
        for rule in spec.rules:
            for m in rule.regex.finditer(clean):
                if m.end() == m.start():
                    continue
                if rule.negatable and _negated(clean, m.start(), policy):
                    continue
                evidence = verbatim(text, m.start(), m.end())
                if not evidence:
                    continue
                severity = rule.severity or spec.severity
                hits.append(Hit(kind, rule, severity, m.start(), m.end(), evidence))
                break
    return hits


def is_question(text: str, policy: Policy) -> bool:
    """Whether ``text`` asks a how-to question (a cue of ``escalation.questions`` matches)."""
    clean = plain(text)
    return any(cue.regex.search(clean) for cue in policy.question_cues)


def signals_from_hits(text: str, hits: list[Hit], policy: Policy, *,
                      question: bool = False) -> tuple[list[Signal], list[str]]:
    """One signal per kind (its strongest evidence), and the ids of every rule that fired.

    A kind with only weak cues becomes a ``medium`` signal when ``policy.escalation.combine`` or more
    distinct rules fired; its evidence is then the verbatim span from the first cue to the last. On a
    how-to ``question``, emphasis cues count as ``low`` and weak cues do not add up.
    """
    signals: list[Signal] = []
    fired: list[str] = []
    by_kind: dict[str, list[Hit]] = {}
    calmed = False
    for hit in hits:
        if question and hit.rule.emphasis and hit.severity > Severity.low:
            hit = Hit(hit.kind, hit.rule, Severity.low, hit.start, hit.end, hit.evidence)
            calmed = True
        by_kind.setdefault(hit.kind, []).append(hit)
        fired.append(hit.rule.id)
    for kind, kind_hits in by_kind.items():
        strongest = max(kind_hits, key=lambda h: (h.severity, -h.start))
        weak_only = strongest.severity < policy.escalation.min_severity
        adds_up = weak_only and len(kind_hits) >= policy.escalation.combine
        calmed = calmed or (adds_up and question)
        if adds_up and not question:
            first = min(kind_hits, key=lambda h: h.start)
            last = max(kind_hits, key=lambda h: h.end)
            evidence = verbatim(text, first.start, last.end)
            if len(evidence) > _MAX_COMBINED:
                evidence = strongest.evidence
            rule_id = f"{kind}.combined"
            fired.append(rule_id)
            signals.append(Signal(kind=kind, severity=Severity.medium, evidence=evidence, rule=rule_id))
        else:
            signals.append(Signal(kind=kind, severity=strongest.severity, evidence=strongest.evidence,
                                  rule=strongest.rule.id))
    if calmed:
        fired.append(QUESTION_RULE)
    order = list(policy.signals)
    signals.sort(key=lambda s: (-s.severity, order.index(s.kind)))
    return signals, fired


def detect(text: str, policy: Policy) -> tuple[list[Signal], list[str]]:
    """The signals in ``text`` (read through :func:`bot.text.plain`; evidence quoted from ``text``)."""
    hits = find_hits(text, policy)
    question = any(h.severity < policy.escalation.min_severity or h.rule.emphasis for h in hits) \
        and is_question(text, policy)
    return signals_from_hits(text, hits, policy, question=question)
