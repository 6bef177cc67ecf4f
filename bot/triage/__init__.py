"""Triage: risk signals with verbatim evidence and intent classification, driven by the policy."""

from bot.triage.intents import IntentResult, classify
from bot.triage.signals import detect

__all__ = ["IntentResult", "classify", "detect"]
