"""App Home (#15): a staff member opening Baton's Home tab sees their claimed conversations, the drafts
waiting for approval and, for leads, what each intent has earned; anyone else is told it is for the
support team only.

The real Bolt app over HTTP with signed ``app_home_opened`` events, against the local Web API fake, on
SQLite and PostgreSQL; what ``views.publish`` received is asserted.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slack_fake import CUSTOMER_TEAM, INTERNAL, PEOPLE, SHARED, FakeSlack, Harness

from adapters import slack_blocks as blocks
from adapters import slack_home
from bot.engine import Engine
from bot.knowledge import KnowledgeBase
from bot.model import Message, Person, Role
from bot.policy import Policy
from bot.service import Service
from bot.store import Store

CALENDAR = "How do I connect my Outlook calendar?"
DISPUTE = "This is ridiculous. You charged us twice for November and I want a refund NOW."


def drafting(policy: Policy) -> Policy:
    """The shipped policy with how-to answers waiting for approval; one judged draft is enough to judge."""
    intents = {**policy.intents, "how_to": policy.intents["how_to"].model_copy(update={"autonomy": "draft"})}
    return policy.model_copy(update={"intents": intents, "autonomy": policy.autonomy.model_copy(
        update={"min_sample": 1, "window": 5})})


@pytest.fixture
async def home(fake: tuple[FakeSlack, str], store: Store, policy: Policy, knowledge: KnowledgeBase,
               monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    monkeypatch.setenv("BATON_LEADS", "U0KIM, U0LEAD2")
    server, url = fake
    async with Harness(Service(Engine(drafting(policy), knowledge), store), server, url) as harness:
        slack_home.register(harness.adapter)
        yield harness


async def open_home(slack: Harness, user: str, *, tab: str = "home") -> dict[str, Any] | None:
    """``user`` opens Baton's Home tab (a signed event); the view published for them, if any."""
    before = len(slack.fake.ok("views.publish"))
    status, _ = await slack.send_event({
        "type": "app_home_opened", "user": user, "channel": "D0HOMEDM", "tab": tab,
        "event_ts": f"{time.time():.6f}", "view": {"id": "V0OLD", "type": "home", "blocks": []}})
    assert status == 200
    published = slack.fake.ok("views.publish")[before:]
    assert len(published) <= 1
    if not published:
        return None
    assert published[0].args["user_id"] == user and published[0].answer["ok"] is True
    view: dict[str, Any] = published[0].args["view"]
    assert view["type"] == "home" and len(view["blocks"]) <= 100
    return view


def shown(view: dict[str, Any] | None) -> str:
    assert view is not None
    return json.dumps(view["blocks"], ensure_ascii=False)


def link_to(card_ts: str) -> str:
    return f"https://notewise.example/archives/{INTERNAL}/p{card_ts.replace('.', '')}"


async def handed_over(slack: Harness, user: str, text: str) -> tuple[str, str]:
    """A customer's message that ends on a handoff card; (conversation id, card ts)."""
    ts = await slack.say(user, text)
    await slack.settle()
    conversation = await slack.service.store.find_conversation("slack", "T0VENDOR", SHARED, ts)
    assert conversation is not None
    handoff = await slack.service.store.handoff(conversation.id)
    assert handoff is not None and handoff.card_ts is not None
    return conversation.id, handoff.card_ts


async def test_staff_see_their_claimed_conversations_and_the_drafts_waiting(home: Harness):
    dispute, dispute_card = await handed_over(home, "U0ALEX", DISPUTE)
    question, question_card = await handed_over(home, "U0DANA", CALENDAR)
    draft = await home.service.store.pending_draft(question)
    assert draft is not None
    assert await home.click("U0SAM", blocks.CLAIM, dispute, dispute_card) == 200
    await home.settle()

    view = await open_home(home, "U0SAM")
    text = shown(view)
    claimed, waiting = text.split("Drafts waiting for approval")
    assert "*Alex Acme (T0ACME0001)* · billing · :red_circle: critical" in claimed
    assert "claimed since <!date^" in claimed and f"<{link_to(dispute_card)}|open the card>" in claimed
    assert "Dana" not in claimed
    first_line = draft["text"].splitlines()[0]
    assert len(first_line) > slack_home.FIRST_LINE  # shown cut short
    assert "*Dana Smith* · how_to · waiting since <!date^" in waiting
    assert f"\\n>{blocks.escape(first_line[:150])}" in waiting and first_line[-40:] not in waiting
    assert f"<{link_to(question_card)}|open the card>" in waiting
    assert "Autonomy per intent" not in text  # Sam is not a lead

    assert await home.click("U0SAM", blocks.RESOLVE, dispute, dispute_card) == 200
    assert await home.service.approve_draft(question, "U0SAM", "Sam Agent") == []
    await home.settle()
    claimed, waiting = shown(await open_home(home, "U0SAM")).split("Drafts waiting for approval")
    assert "Alex" not in claimed  # resolved: gone
    assert "*Dana Smith (T0CUSTOMER)* · how_to · :white_circle: low" in claimed  # approving claimed it
    assert "No draft is waiting for approval." in waiting and "Dana" not in waiting
    assert await home.click("U0SAM", blocks.RESOLVE, question, question_card) == 200
    await home.settle()
    assert "Nothing claimed by you is open." in shown(await open_home(home, "U0SAM"))


def customers(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    for n, name in enumerate(names):
        monkeypatch.setitem(PEOPLE, f"U0C{n:04d}", {"name": f"c{n}", "real_name": name, "team_id": CUSTOMER_TEAM,
                                                    "tz": "UTC"})


async def test_leads_see_autonomy_per_intent_with_the_proposed_promotion(home: Harness,
                                                                       monkeypatch: pytest.MonkeyPatch):
    customers(monkeypatch, "First Customer", "Second Customer")
    approved, _ = await handed_over(home, "U0C0000", CALENDAR)
    assert await home.service.approve_draft(approved, "U0SAM", None) == []  # min_sample 1: a promotion qualifies
    await handed_over(home, "U0C0001", CALENDAR)

    text = shown(await open_home(home, "U0KIM"))
    earned = text.split("Autonomy per intent")[1]
    assert "*how_to* · *draft*\\nsample 1 · approved unedited 100% · mean edit ratio 0.00 · rejected 0%" in earned
    assert "promotion proposed: draft → auto*" in earned and "--promote how_to" in earned
    assert "*billing* · *draft*\\nsample 0" in earned
    assert "*cancellation* · *draft* (at most draft)" in earned  # the human tier's ceiling
    assert earned.count("promotion proposed") == 1
    waiting = text.split("Drafts waiting for approval")[1].split("Autonomy")[0]
    assert "Second Customer" in waiting and "First Customer" not in waiting

    assert "Autonomy per intent" not in shown(await open_home(home, "U0SAM"))  # not in BATON_LEADS


async def test_people_outside_the_team_are_told_the_home_is_for_the_support_team(home: Harness):
    await handed_over(home, "U0DANA", CALENDAR)  # a draft waits: there is something to leak
    for outsider in ("U0DANA", "U0ALEX"):  # a customer of the shared channel, and another organisation's member
        view = await open_home(home, outsider)
        assert view is not None and slack_home.STAFF_ONLY in shown(view)
        assert "Dana Smith" not in shown(view) and "Drafts" not in shown(view) and len(view["blocks"]) == 2
    unknown = await open_home(home, "U0NOBODY")  # users.info cannot say: nothing shown either
    assert unknown is not None and shown(unknown) == json.dumps(
        [blocks._section(slack_home.UNKNOWN)], ensure_ascii=False)
    assert await open_home(home, "U0SAM", tab="messages") is None  # only the Home tab is drawn


async def test_what_customers_wrote_is_escaped(home: Harness, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(PEOPLE, "U0EVE", {"name": "eve", "real_name": "Eve <!channel> @here <@U0KIM>",
                                          "team_id": CUSTOMER_TEAM, "tz": "UTC"})
    conversation, card = await handed_over(home, "U0EVE", CALENDAR)
    assert await home.click("U0SAM", blocks.CLAIM, conversation, card) == 200
    await home.settle()
    text = shown(await open_home(home, "U0SAM"))
    assert text.count("Eve &lt;!channel&gt; @\u2060here &lt;@U0KIM&gt;") == 2  # claimed, and its draft
    assert "<!channel>" not in text and "<@U0KIM>" not in text and " @here" not in text


async def test_a_failed_publish_is_logged_and_the_next_opening_works(home: Harness):
    home.fake.fail("views.publish", 500)
    assert await open_home(home, "U0SAM") is None
    assert [c.status for c in home.fake.calls if c.method == "views.publish"] == [500]
    assert "Your claimed conversations" in shown(await open_home(home, "U0SAM"))


# ---- the queries, on both stores ----


async def conversation(store: Store, n: int, at: datetime) -> str:
    message = Message(platform="slack", workspace="T0VENDOR", channel=SHARED, thread=f"{n}.000100", at=at,
                      event_id=f"e{n}", author=Person(id=f"U0C{n:04d}", name=f"Customer {n}", role=Role.customer,
                                                      organisation=CUSTOMER_TEAM), text="help")
    async with store.transaction():
        made, _ = await store.conversation_for(message)
    return made.id


async def test_claimed_and_pending_queries(store: Store):
    at = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
    ids = [await conversation(store, n, at + timedelta(minutes=n)) for n in range(24)]
    for conversation_id in ids[:23]:
        assert (await store.claim(conversation_id, "U0SAM"))[0]
    assert (await store.claim(ids[23], "U0KIM"))[0]
    assert await store.resolve(ids[0], "U0SAM", awaiting_csat=False)
    found, total = await slack_home.claimed_by(store, "U0SAM", limit=20)
    assert total == 22 and [c.conversation_id for c in found] == ids[1:21]  # held longest first
    assert all(c.since.tzinfo is not None for c in found) and found[0].since <= found[-1].since
    assert found[0].customer == "Customer 1" and found[0].organisation == CUSTOMER_TEAM
    assert (await slack_home.claimed_by(store, "U0NOBODY")) == ([], 0)

    await store.add_draft(ids[1], intent="how_to", mode="draft", text="older")
    newest = await store.add_draft(ids[1], intent="how_to", mode="draft", text="newer\nsecond line")
    await store.add_draft(ids[2], intent="how_to", mode="shadow", text="a shadow draft waits for no approval")
    await store.add_draft(ids[0], intent="how_to", mode="draft", text="in a resolved conversation")
    decided = await store.add_draft(ids[3], intent="billing", mode="draft", text="decided")
    assert await store.decide_draft(decided, status="approved", by="U0SAM", final_text="decided", edit_ratio=0.0)
    await store.add_draft(ids[4], intent="billing", mode="draft", text="waiting")
    waiting, total = await slack_home.pending_drafts(store)
    assert total == 2 and [(w.conversation_id, w.text) for w in waiting] == [(ids[1], "newer\nsecond line"),
                                                                           (ids[4], "waiting")]
    assert waiting[0].claimed_by == "U0SAM" and waiting[0].card_ts is None
    assert newest > 0 and (await slack_home.pending_drafts(store, limit=1))[1] == 2


async def test_a_long_home_stays_within_slacks_limit(home: Harness):
    store = home.service.store
    at = datetime.now(UTC) - timedelta(hours=1)
    for n in range(25):
        made = await conversation(store, n, at)
        assert (await store.claim(made, "U0KIM"))[0]
        await store.add_draft(made, intent="how_to", mode="draft", text=f"draft {n}")
    view = await open_home(home, "U0KIM")  # the fake refuses more than 100 blocks, as Slack does
    text = shown(view)
    assert "and 5 more claimed by you" in text and "and 5 more drafts" in text
    assert text.count("card not posted yet") == 40 and "Autonomy per intent" in text


def test_leads_come_from_the_environment():
    assert slack_home.leads({"BATON_LEADS": " U0KIM,,U0LEAD2 "}) == {"U0KIM", "U0LEAD2"}
    assert slack_home.leads({}) == frozenset()
