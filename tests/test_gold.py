"""The gold set: sensitive cases written for the sample product. A missed escalation fails CI."""

import json
from collections import Counter
from pathlib import Path

import pytest

GOLD = Path(__file__).with_name("gold") / "sensitive.jsonl"
ROWS = [json.loads(line) for line in GOLD.read_text().splitlines() if line.strip()]
KINDS = ("frustration", "billing", "data_loss", "churn", "security", "outage", "human_request", "privacy")


def test_gold_set_is_big_enough():
    expect = Counter(r["expect"] for r in ROWS)
    assert expect["escalate"] >= 60 and expect["calm"] >= 40
    assert set(KINDS) <= {r["kind"] for r in ROWS if r["expect"] == "escalate"}


@pytest.mark.parametrize("row", [r for r in ROWS if r["expect"] == "escalate"], ids=lambda r: r["id"])
def test_must_escalate_with_the_right_kind(engine, row):
    decision = engine.triage(row["text"])
    assert decision.escalate, decision.rules
    assert row["kind"] in {s.kind for s in decision.signals}, decision.rules
    for signal in decision.signals:
        assert signal.evidence in row["text"]


@pytest.mark.parametrize("row", [r for r in ROWS if r["expect"] == "calm"], ids=lambda r: r["id"])
def test_must_not_escalate(engine, row):
    decision = engine.triage(row["text"])
    assert not decision.escalate, decision.rules
