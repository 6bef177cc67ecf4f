"""The pre-send guard: each kind of bad message is stopped, a good one passes."""

from __future__ import annotations

import pytest

from bot.guard import Guard

URL = "https://help.notewise.example/articles/plans"


@pytest.fixture
def guard(policy, knowledge):
    return Guard(policy, knowledge.urls)


def kinds(problems):
    return {p.kind for p in problems}


def test_a_good_message_passes(guard):
    assert guard.check(f"Hi Dana, plans are compared here: {URL}", customer_name="Dana Smith",
                       previous="Something else") == []


@pytest.mark.parametrize("text", [
    "Hi {name}, your refund is on its way", "Thanks {{ customer.first_name }}!", "Your plan is ${plan}",
    "Dear [CUSTOMER], sorry", "We will fix it by TBD",
])
def test_unfilled_placeholders(guard, text):
    assert "placeholder" in kinds(guard.check(text, customer_name="Dana"))


def test_a_repeat_of_the_previous_message(guard):
    previous = "Could you tell me the meeting's name?"
    assert "repeat" in kinds(guard.check("could you tell me  the meeting's name?", previous=previous))
    assert guard.check("Could you tell me the date?", previous=previous) == []


def test_greeting_someone_else(guard):
    assert "wrong_person" in kinds(guard.check("Hi Marcus, thanks for waiting", customer_name="Dana Smith"))
    assert "wrong_person" in kinds(guard.check("Hello Marcus!", customer_name=None))
    assert guard.check("Hi there, thanks for waiting", customer_name="Dana Smith") == []
    assert guard.check("Hi dana, thanks for waiting", customer_name="Dana Smith") == []


def test_links_outside_the_help_center(guard):
    assert "unknown_link" in kinds(guard.check("See https://evil.example.com/login to fix it"))
    assert "unknown_link" in kinds(guard.check(f"See {URL}/../../admin"))
    assert guard.check(f"See {URL}.") == []


@pytest.mark.parametrize("text", [
    "Routing per frustration.anger", "Internal note: customer is on a legacy contract",
    "Priya Raman from our team will call you", "Paging S0000BILLING", "Ping <!subteam^S0123ABCD>",
])
def test_internal_only_content(guard, text):
    assert "internal" in kinds(guard.check(text))


def test_an_empty_message(guard):
    assert kinds(guard.check("  ")) == {"empty"}
