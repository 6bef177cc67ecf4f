"""Intent classification: weighted cues from the policy, plus the intents that signals point to.

Cues read :func:`bot.text.plain` (links, mentions and emoji codes blanked). Each cue counts once.
A signal that names an intent in the policy votes for it with ``SIGNAL_VOTE``. The confidence is the
winner's share of all the evidence, damped when there is little of it, so a single weak cue never
reads as certainty.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.model import Signal
from bot.policy import Policy
from bot.text import plain
from bot.triage.signals import is_question

SIGNAL_VOTE = 2.0
_PRIOR = 1.0  # evidence mass given to "none of the above"


@dataclass(frozen=True, slots=True)
class IntentResult:
    intent: str
    confidence: float
    cues: tuple[str, ...]
    """Ids of the cues that voted for the winning intent."""


def classify(text: str, signals: list[Signal], policy: Policy) -> IntentResult:
    clean = plain(text)
    scores: dict[str, float] = {}
    cues: dict[str, list[str]] = {}
    substantive: set[str] = set()  # intents with more than topic cues: a problem cue or a signal's vote
    for name, spec in policy.intents.items():
        for cue in spec.cues:
            if cue.regex.search(clean):
                scores[name] = scores.get(name, 0.0) + cue.weight
                cues.setdefault(name, []).append(cue.id)
                if not cue.topic:
                    substantive.add(name)
    for signal in signals:
        target = policy.signals[signal.kind].intent
        if target:
            scores[target] = scores.get(target, 0.0) + SIGNAL_VOTE * int(signal.severity) / 2
            substantive.add(target)
    # An intent named only by its topic ("a meeting", "the plan") does not turn a question into a
    # problem report or a dispute: the question goes to the help center.
    question = "?" in clean or is_question(text, policy)
    contenders = [k for k in scores if k in substantive or (scores[k] >= 1.0 and not question)]
    if not contenders:
        return IntentResult(policy.default_intent, 0.3, ())
    best = max(contenders, key=lambda k: (scores[k], -list(policy.intents).index(k)))
    confidence = scores[best] / (sum(scores.values()) + _PRIOR)
    return IntentResult(best, min(confidence, 0.99), tuple(cues.get(best, ())))
