"""The gold sets: sensitive cases written for the sample product. A missed escalation fails CI.

``sensitive.jsonl`` is the first set; ``product.jsonl`` covers the product's own risk phrasings (an
empty recording, every meeting failing since a time, the notetaker in a meeting nobody invited it
to, ...) and calm messages that only sound alarming (privacy and security how-tos, "URGENT: how do
I ..."). ``holdout.jsonl`` is never tuned on: it is only checked here for staying separate.

A row may also say where it must go: ``route`` and ``severity`` for a must-escalate row, ``intent`` for a
calm one (a bug report goes to a person for a draft, a meeting issue gathers the meeting's details).
"""

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from bot.model import Tier

GOLD = Path(__file__).with_name("gold")
SETS = ("sensitive.jsonl", "product.jsonl")
KINDS = ("frustration", "billing", "data_loss", "churn", "security", "outage", "human_request", "privacy")


def _load(name):
    return [json.loads(line) for line in (GOLD / name).read_text().splitlines() if line.strip()]


ROWS = [row for name in SETS for row in _load(name)]


def _normal(text):
    return re.sub(r"\W+", " ", text.lower()).strip()


def test_gold_sets_are_big_enough():
    assert len({r["id"] for r in ROWS}) == len(ROWS)
    expect = Counter(r["expect"] for r in ROWS)
    assert expect["escalate"] >= 200 and expect["calm"] >= 140
    assert set(KINDS) <= {r["kind"] for r in ROWS if r["expect"] == "escalate"}
    product = _load("product.jsonl")
    escalate = Counter(r["kind"] for r in product if r["expect"] == "escalate")
    assert sum(escalate.values()) >= 150 and set(KINDS) <= set(escalate)
    assert min(escalate["data_loss"], escalate["outage"], escalate["security"]) >= 20
    assert sum(r["expect"] == "calm" for r in product) >= 100


def test_holdout_stays_out_of_the_gold_sets():
    gold = {_normal(r["text"]) for r in ROWS}
    holdout = _load("holdout.jsonl")
    assert len(holdout) >= 40
    assert not [r["id"] for r in holdout if _normal(r["text"]) in gold]


@pytest.mark.parametrize("row", [r for r in ROWS if r["expect"] == "escalate"], ids=lambda r: r["id"])
def test_must_escalate_with_the_right_kind(engine, row):
    decision = engine.triage(row["text"])
    assert decision.escalate, decision.rules
    assert row["kind"] in {s.kind for s in decision.signals}, decision.rules
    for signal in decision.signals:
        assert signal.evidence and signal.evidence in row["text"]
    if "route" in row:
        assert decision.route == row["route"], decision.rules
    if "severity" in row:
        assert decision.severity.name == row["severity"], decision.rules


@pytest.mark.parametrize("row", [r for r in ROWS if r["expect"] == "calm"], ids=lambda r: r["id"])
def test_must_not_escalate(engine, policy, row):
    # Calm: no risk signal escalates and the intent is not a human-led one. (An assisted intent, a mild
    # bug report, may still be handed to a person for a draft; that is not a risk escalation.)
    decision = engine.triage(row["text"])
    risky = [s.kind for s in decision.signals
             if policy.signals[s.kind].escalate and s.severity >= policy.escalation.min_severity]
    assert not risky, decision.rules
    assert policy.intents[decision.intent].tier is not Tier.human, decision.rules
    if "intent" in row:
        assert decision.intent == row["intent"], decision.rules


@pytest.mark.parametrize("row", [r for r in ROWS if r["expect"] == "calm" and r.get("intent") not in (None, "how_to")],
                         ids=lambda r: r["id"])
def test_calm_rows_with_an_intent_get_its_outcome(bot, policy, row):
    # Through the engine as it runs (with the help center): an assisted intent goes to a person with the
    # brief; an intent with a form asks for what is missing (or reads the details back) without a handoff.
    # (A how-to's answer is the help center's business: tests/test_paraphrases.py.)
    decision = bot.triage(row["text"])
    spec = policy.intents[row["intent"]]
    assert decision.intent == row["intent"], decision.rules
    if spec.tier is Tier.assisted:
        assert decision.escalate and f"tier.{row['intent']}.assisted" in decision.rules, decision.rules
    elif spec.form:
        assert not decision.escalate and decision.reply, decision.rules
        assert decision.missing or decision.awaiting == "confirm", decision.rules
