"""Intent classification: weighted cues from the policy, plus the intents that signals point to.

Each cue counts once. A signal that names an intent in the policy votes for it with
``SIGNAL_VOTE``. The confidence is the winner's share of all the evidence, damped when there is
little of it, so a single weak cue never reads as certainty.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.model import Signal
from bot.policy import Policy

SIGNAL_VOTE = 2.0
_PRIOR = 1.0  # evidence mass given to "none of the above"


@dataclass(frozen=True, slots=True)
class IntentResult:
    intent: str
    confidence: float
    cues: tuple[str, ...]
    """Ids of the cues that voted for the winning intent."""


def classify(text: str, signals: list[Signal], policy: Policy) -> IntentResult:
    scores: dict[str, float] = {}
    cues: dict[str, list[str]] = {}
    for name, spec in policy.intents.items():
        for cue in spec.cues:
            if cue.regex.search(text):
                scores[name] = scores.get(name, 0.0) + cue.weight
                cues.setdefault(name, []).append(cue.id)
    for signal in signals:
        target = policy.signals[signal.kind].intent
        if target:
            scores[target] = scores.get(target, 0.0) + SIGNAL_VOTE * int(signal.severity) / 2
    if not scores:
        return IntentResult(policy.default_intent, 0.3, ())
    best = max(scores, key=lambda k: (scores[k], -list(policy.intents).index(k)))
    confidence = scores[best] / (sum(scores.values()) + _PRIOR)
    return IntentResult(best, min(confidence, 0.99), tuple(cues.get(best, ())))
