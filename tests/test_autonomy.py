"""Earned autonomy (#15, first part): an intent's answers go out on their own (auto), wait for a
person's approval (draft) or are only written down while a person answers (shadow); what staff do
with the drafts is measured, and the intent is promoted or demoted on it.

The whole bot on the in-memory platform, on SQLite and PostgreSQL; the pure rules alone below.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from bot import autonomy
from bot.autonomy import Figures, edit_ratio, figures, judge, starting
from bot.engine import Engine
from bot.knowledge import KnowledgeBase
from bot.model import ConversationState, Person, Role
from bot.policy import Autonomy, Policy
from bot.store import Store
from bot.testing import Customer, TestBot

START = datetime(2026, 11, 20, 10, 0, tzinfo=ZoneInfo("America/Los_Angeles"))  # a Friday, in business hours
CALENDAR = "How do I connect my Outlook calendar?"
ARTICLE = "https://help.notewise.example/articles/connect-calendars"


def supervised(policy: Policy, mode: str, **rules: object) -> Policy:
    """The shipped policy with how-to answers in ``mode``, and the autonomy rules changed."""
    intents = {**policy.intents, "how_to": policy.intents["how_to"].model_copy(update={"autonomy": mode})}
    return policy.model_copy(update={"intents": intents,
                                     "autonomy": policy.autonomy.model_copy(update=rules)})


@pytest.fixture
def draft_policy(policy: Policy) -> Policy:
    return supervised(policy, "draft", min_sample=3, window=5)


async def running(policy: Policy, knowledge: KnowledgeBase, store: Store) -> AsyncIterator[TestBot]:
    async with TestBot.create(Engine(policy, knowledge), store) as bot:
        yield bot


@pytest.fixture
async def drafting(draft_policy: Policy, knowledge: KnowledgeBase, store: Store) -> AsyncIterator[TestBot]:
    async for bot in running(draft_policy, knowledge, store):
        yield bot


def customer(bot: TestBot, n: int = 0) -> Customer:
    return bot.customer(Person(id=f"U0C{n:04d}", name=f"Customer {n}", organisation="T0CUSTOMER"), start=START)


async def ask(bot: TestBot, n: int = 0) -> tuple[Customer, str]:
    """A how-to question in draft mode: the customer is told a teammate checks the answer."""
    someone = customer(bot, n)
    await someone.says(CALENDAR)
    await bot.settle()
    assert someone.conversation_id is not None
    return someone, someone.conversation_id


# ---- the three modes ----


async def test_auto_sends_the_answer_at_once(baton: TestBot):
    someone = customer(baton)
    await someone.says(CALENDAR)
    await baton.settle()
    assert len(someone.replies) == 1 and ARTICLE in someone.replies[0]
    assert someone.card() is None


async def test_draft_holds_the_answer_for_approval_and_tells_the_customer(drafting: TestBot, draft_policy: Policy):
    someone, conversation = await ask(drafting)
    assert someone.replies == [draft_policy.notices.checking[0]]  # no answer yet, and never silence
    card = someone.card()
    assert card is not None  # the draft waits on a handoff card: the SLA clock runs
    handoff = await drafting.store.handoff(conversation)
    assert handoff is not None and handoff.draft is not None and handoff.draft["status"] == "pending"
    assert ARTICLE in handoff.draft["text"] and handoff.brief["draft"] == handoff.draft["text"]
    assert handoff.sla_due is not None
    assert "autonomy.draft" in (await drafting.store.decisions_of(conversation))[-1]["rules"]


async def test_approve_sends_exactly_the_draft_once_in_the_bots_voice(drafting: TestBot):
    someone, conversation = await ask(drafting)
    draft = (await drafting.store.pending_draft(conversation))["text"]  # type: ignore[index]
    assert await drafting.service.approve_draft(conversation, "U0SAM", "Sam Agent") == []
    await drafting.settle()
    assert someone.replies[-1] == draft and someone.replies.count(draft) == 1
    [row] = await drafting.store.reviewed_drafts("how_to", window=10)
    assert row["status"] == "approved" and row["edit_ratio"] == 0.0 and row["decided_by"] == "U0SAM"
    conv = await drafting.store.get_conversation(conversation)
    assert conv is not None and conv.claimed_by == "U0SAM"


async def test_two_staff_approving_at_once_send_once(drafting: TestBot):
    someone, conversation = await ask(drafting)
    results = await asyncio.gather(*(drafting.service.approve_draft(conversation, f"U0S{n}", None) for n in range(5)))
    await drafting.settle()
    assert sum(1 for r in results if r == []) == 1
    assert len(someone.replies) == 2  # the "checking" notice, then the answer once


async def test_an_edited_draft_sends_the_edit_and_stores_its_edit_ratio(drafting: TestBot):
    someone, conversation = await ask(drafting)
    draft = (await drafting.store.pending_draft(conversation))["text"]  # type: ignore[index]
    edited = draft.replace("How", "Here is how", 1) + " Let me know if it works."
    assert await drafting.platform.send_to_customer(conversation, edited) == []
    await drafting.settle()
    assert edited in someone.replies[-1]
    [row] = await drafting.store.reviewed_drafts("how_to", window=10)
    assert row["status"] == "edited" and row["final_text"] == edited
    assert row["edit_ratio"] == pytest.approx(edit_ratio(draft, edited)) and 0 < row["edit_ratio"] < 0.5


async def test_a_rejected_draft_leaves_a_normal_handoff(drafting: TestBot):
    someone, conversation = await ask(drafting)
    assert await drafting.service.reject_draft(conversation, "U0SAM", "no such reason") != []
    assert await drafting.service.reject_draft(conversation, "U0SAM", "outdated article") == []
    await drafting.settle()
    assert len(someone.replies) == 1  # nothing more reached the customer
    [row] = await drafting.store.reviewed_drafts("how_to", window=10)
    assert row["status"] == "rejected" and row["reason"] == "outdated article"
    conv = await drafting.store.get_conversation(conversation)
    assert conv is not None and conv.state is ConversationState.escalated  # people have it, as any handoff
    assert await drafting.service.approve_draft(conversation, "U0SAM", None) != []  # nothing left to approve


async def test_shadow_sends_nothing_of_the_bots_and_stores_the_pair(policy: Policy, knowledge: KnowledgeBase,
                                                                    store: Store):
    async for bot in running(supervised(policy, "shadow"), knowledge, store):
        someone, conversation = await ask(bot)
        draft = (await store.pending_draft(conversation))["text"]  # type: ignore[index]
        assert all(ARTICLE not in reply for reply in someone.replies)  # only the handoff notice
        staff_answer = "Go to Settings, then Calendars, and connect Outlook there."
        assert await bot.platform.send_to_customer(conversation, staff_answer) == []
        await bot.settle()
        [row] = await store.reviewed_drafts("how_to", window=10)
        assert row["mode"] == "shadow" and row["status"] == "answered" and row["final_text"] == staff_answer
        assert row["route"] == "support" and row["final_route"] == "support"  # where the bot and staff sent it
        assert row["edit_ratio"] == pytest.approx(edit_ratio(draft, staff_answer))
        assert someone.replies[-1].endswith(staff_answer)


# ---- promotion and demotion ----


async def test_a_run_of_unedited_approvals_proposes_a_promotion_a_lead_confirms(drafting: TestBot, store: Store,
                                                                                draft_policy: Policy):
    for n in range(3):  # min_sample = 3
        _, conversation = await ask(drafting, n)
        assert await drafting.service.approve_draft(conversation, "U0SAM", None) == []
    assert (await autonomy.modes(store, draft_policy))["how_to"] == "draft"  # proposed, not made
    await drafting.settle()
    told = [post.text for post in drafting.platform.reviews if post.kind == "autonomy"]
    assert told == ["how_to PROPOSED: draft -> auto: approved unedited 100%, mean edit 0.00, rejected 0% over the "
                    "last 3"]  # once, to the leads, with the figures
    assert await drafting.service.promote("nope", "U0LEAD") != []
    assert await drafting.service.promote("how_to", "U0LEAD") == []
    [change] = await store.autonomy_changes("how_to")
    assert change["mode"] == "auto" and change["figures"]["sample"] == 3 and change["figures"]["approved_unedited"] == 1
    assert (await autonomy.modes(store, draft_policy))["how_to"] == "auto"
    [stored] = await store.autonomy_changes("how_to")
    assert stored["by"] == "U0LEAD" and stored["previous"] == "draft" and stored["figures"]["sample"] == 3
    someone, _ = await ask(drafting, 9)  # now answered at once
    assert ARTICLE in someone.replies[-1]


async def test_one_harmful_rejection_demotes_at_once(policy: Policy, knowledge: KnowledgeBase, store: Store):
    rules = supervised(policy, "draft", min_sample=3, window=5, auto_promote=True)
    async for bot in running(rules, knowledge, store):
        for n in range(3):
            _, conversation = await ask(bot, n)
            assert await bot.service.approve_draft(conversation, "U0SAM", None) == []
        assert (await autonomy.modes(store, rules))["how_to"] == "auto"  # promoted alone: the policy allows it
        await store.record_autonomy("how_to", mode="draft", previous="auto", by="test", why="back to draft",
                                    figures={})
        _, conversation = await ask(bot, 5)
        assert await bot.service.reject_draft(conversation, "U0SAM", "should have escalated") == []
        assert (await autonomy.modes(store, rules))["how_to"] == "shadow"
        assert (await store.autonomy_changes("how_to"))[-1]["why"].startswith("a draft was rejected as harmful")
        await bot.settle()
        told = [post.text for post in bot.platform.reviews if post.kind == "autonomy"]
        assert told[0].startswith("how_to now draft -> auto") and told[-1].startswith("how_to now draft -> shadow")


def test_a_human_tier_intent_is_never_promoted_past_draft(policy: Policy):
    perfect = Figures(sample=100, approved_unedited=1.0, mean_edit_ratio=0.0, rejected=0.0, harmful=0)
    assert judge(policy, "cancellation", "draft", perfect) is None
    assert judge(policy, "cancellation", "shadow", perfect).mode == "draft"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="human tier"):
        Policy.model_validate({**policy.model_dump(), "intents": {
            **policy.model_dump()["intents"], "cancellation": {**policy.model_dump()["intents"]["cancellation"],
                                                               "autonomy": "auto"}}})


def test_starting_modes_follow_the_policy_and_the_tiers(policy: Policy):
    assert starting(policy, "how_to") == "auto" and starting(policy, "billing") == "draft"
    assert starting(policy, "cancellation") == "draft"


def test_figures_and_judgement_on_a_window(policy: Policy):
    rules = policy.autonomy.model_copy(update={"min_sample": 4})
    tuned = policy.model_copy(update={"autonomy": rules})
    rows = [{"status": "approved", "edit_ratio": 0.0, "reason": None}] * 3 + \
        [{"status": "edited", "edit_ratio": 0.2, "reason": None}, {"status": "rejected", "edit_ratio": None,
                                                                    "reason": "wrong tone"}]
    measured = figures(rows, tuned)
    assert measured == Figures(sample=5, approved_unedited=0.6, mean_edit_ratio=0.05, rejected=0.2, harmful=0)
    change = judge(tuned, "how_to", "auto", measured)  # below demote_unedited (0.7): one step down
    assert change is not None and change.mode == "draft" and change.confirmed
    assert judge(tuned, "how_to", "draft", figures(rows[:3], tuned)) is None  # sample 3 < 4: too few to judge
    assert isinstance(Autonomy(), Autonomy)


def test_edit_ratio():
    assert edit_ratio("Go to Settings.", "Go to  Settings.") == 0.0  # white space is not an edit
    assert edit_ratio("abc", "xyz") == 1.0
    assert 0 < edit_ratio("Go to Settings.", "Go to Settings, then Calendars.") < 1


async def command(*args: str, url: str) -> tuple[int, str, str]:
    """``python -m bot ARGS`` in its own process, on the database at ``url``."""
    import os
    import sys

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, env={**os.environ, "BATON_DATABASE_URL": url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def test_the_autonomy_command_shows_modes_figures_proposals_and_changes(tmp_path):
    import json

    from bot.model import Message

    url = f"sqlite+aiosqlite:///{tmp_path / 'baton.db'}"
    store = Store(url)
    await store.migrate()
    message = Message(platform="slack", workspace="T1", channel="C1", thread="1.0", at=START, event_id="e1",
                      author=Person(id="U1"), text="we were charged twice")
    async with store.transaction():
        conversation, _ = await store.conversation_for(message)
    for n in range(20):  # the shipped policy's min_sample: billing (assisted, draft) qualifies
        draft = await store.add_draft(conversation.id, intent="billing", mode="draft", text=f"answer {n}")
        assert await store.decide_draft(draft, status="approved", by="U0SAM", final_text=f"answer {n}", edit_ratio=0)
    await store.close()

    code, out, err = await command("autonomy", "--json", url=url)
    assert code == 0, err
    billing = json.loads(out)["intents"]["billing"]
    assert billing["mode"] == "draft" and billing["sample"] == 20 and billing["approved_unedited"] == 1.0
    assert billing["proposed"] == "auto" and billing["last_change"] is None
    code, out, err = await command("autonomy", "--promote", "billing", "--by", "U0LEAD", url=url)
    assert code == 0, err
    assert "billing          auto" in out and "draft -> auto by U0LEAD" in out
    code, _, err = await command("autonomy", "--promote", "cancellation", url=url)  # nothing to promote
    assert code == 2 and "does not qualify" in err


# ---- escalation tiers ----


async def test_escalate_to_the_next_tier_moves_the_handoff_and_keeps_who_owned_it(baton: TestBot, store: Store):
    someone = customer(baton)
    await someone.says("This is ridiculous. You charged us twice for November.")
    conversation = someone.conversation_id
    assert (await baton.platform.claim(conversation)).won
    before = await store.get_conversation(conversation)
    assert before is not None and before.route == "billing"
    results = await asyncio.gather(*(baton.service.escalate_tier(conversation, "U0SAM") for _ in range(3)))
    await baton.settle()
    assert sorted(len(r) for r in results) == [0, 1, 1]  # moved once
    after = await store.get_conversation(conversation)
    assert after is not None and after.route == "leadership" and after.claimed_by is None
    assert after.state is ConversationState.escalated
    handoff = await store.handoff(conversation)
    assert handoff is not None and handoff.sla_route == "leadership" and handoff.sla_due is not None
    card = someone.card()
    assert card is not None and any("escalated this to" in note for note in card.notes())
    causes = [t["cause"] for t in await store.transitions_of(conversation)]
    assert any(c.startswith("escalated from billing to leadership (owned by") for c in causes)
    assert await baton.service.escalate_tier(conversation, "U0SAM") != []  # leadership is the last tier
    assert len(someone.replies) == 1  # the customer was not asked anything again


# ---- the trainee queue ----


@pytest.fixture
def trainee_policy(policy: Policy) -> Policy:
    from bot.policy import Route, Trainee

    routes = {**policy.routes, "trainee": Route(description="new teammates", slack="S0TRAINEE", label="Trainees")}
    return policy.model_copy(update={"routes": routes, "trainee": Trainee(route="trainee", intents=["billing"],
                                                                           max_severity="medium")})


async def test_a_good_first_ticket_goes_to_trainees_and_moves_up_when_unclaimed(
        trainee_policy: Policy, knowledge: KnowledgeBase, store: Store):
    from datetime import timedelta

    async for bot in running(trainee_policy, knowledge, store):
        calm = customer(bot, 1)
        await calm.says("I need to update the billing address on our invoices")
        conversation = await store.get_conversation(calm.conversation_id)
        assert conversation is not None and conversation.route == "trainee"
        handoff = await store.handoff(conversation.id)
        assert handoff is not None and "trainee.billing" in handoff.brief["rules"]
        assert any("good first ticket" in why for why in handoff.brief["why_now"])
        angry = customer(bot, 2)  # too severe for a new hire: the regular route
        await angry.says("This is ridiculous. You charged us twice for November and I want a refund NOW.")
        assert (await store.get_conversation(angry.conversation_id)).route == "billing"  # type: ignore[union-attr]

        assert handoff.sla_due is not None
        assert await bot.service.check_sla(now=handoff.sla_due + timedelta(minutes=1)) >= 1
        await bot.settle()
        moved = await store.get_conversation(conversation.id)
        assert moved is not None and moved.route == "billing"  # up to the route it would have had
        card = calm.card()
        assert card is not None and any("moving up to" in note for note in card.notes())


# ---- the QA review queue ----


def reviewing(policy: Policy, **rules: object) -> Policy:
    return policy.model_copy(update={"review": policy.review.model_copy(update={"enabled": True, **rules})})


def test_the_sample_rate_holds_on_a_thousand_decisions():
    from bot.service import sampled

    for share in (0.05, 0.1, 0.5):
        picked = sum(sampled(f"conversation-{n}:Ev{n}", share) for n in range(1000))
        assert abs(picked - 1000 * share) <= 3 * (1000 * share * (1 - share)) ** 0.5 + 1, (share, picked)
    assert sampled("same key", 0.5) == sampled("same key", 0.5)  # every process picks the same
    assert not any(sampled(f"k{n}", 0.0) for n in range(100)) and all(sampled(f"k{n}", 1.0) for n in range(100))


async def test_what_the_policy_picks_goes_to_the_review_channel(policy: Policy, knowledge: KnowledgeBase,
                                                                store: Store):
    async for bot in running(reviewing(policy, auto_share=1.0), knowledge, store):
        answered = customer(bot, 1)
        await answered.says(CALENDAR)  # sent on its own: sampled (share 1.0)
        handed = customer(bot, 2)
        await handed.says("This is ridiculous. You charged us twice for November and I want a refund NOW.")
        await bot.settle()
        reasons = sorted(post.route or "" for post in bot.platform.reviews)
        assert "auto_answer" in reasons and "handoff" in reasons
        [auto] = await store.reviews_of(reason="auto_answer")
        assert auto["article"] == ARTICLE and auto["intent"] == "how_to" and auto["tag"] is None


async def test_a_harmful_tag_on_an_auto_answer_demotes_the_intent_and_knowledge_tags_name_the_owner(
        policy: Policy, knowledge: KnowledgeBase, store: Store):
    rules = reviewing(policy, auto_share=1.0, knowledge_owner="support")
    async for bot in running(rules, knowledge, store):
        for n in range(2):
            await customer(bot, n).says(CALENDAR)
        await bot.settle()
        first, second = await store.reviews_of(reason="auto_answer")
        assert (await bot.service.tag_review(first["id"], "U0SAM", "nonsense")).problems
        outdated = await bot.service.tag_review(first["id"], "U0SAM", "outdated article", note="the menu moved")
        assert outdated.problems == [] and outdated.owner == "support" and outdated.article == ARTICLE
        assert (await bot.service.tag_review(first["id"], "U0KIM", "correct")).problems  # the first tag stands
        assert (await autonomy.modes(store, rules))["how_to"] == "auto"  # not harmful: no change
        assert (await bot.service.tag_review(second["id"], "U0SAM", "should have escalated")).problems == []
        assert (await autonomy.modes(store, rules))["how_to"] == "draft"  # demoted at once
        someone, _ = await ask(bot, 7)  # and the next answer waits for approval
        assert someone.replies == [rules.notices.checking[0]]


async def test_a_demotion_sticks_a_new_mode_is_judged_on_its_own_record(policy: Policy, knowledge: KnowledgeBase,
                                                                          store: Store):
    rules = supervised(policy, "draft", min_sample=2, window=5, auto_promote=True)
    async for bot in running(rules, knowledge, store):
        for n in range(2):
            _, conversation = await ask(bot, n)
            assert await bot.service.approve_draft(conversation, "U0SAM", None) == []
        assert (await autonomy.modes(store, rules))["how_to"] == "auto"
        await store.record_autonomy("how_to", mode="draft", previous="auto", by="test", why="demoted", figures={})
        assert (await autonomy.measure(store, rules, "how_to")).sample == 0  # the old approvals no longer count
        _, conversation = await ask(bot, 5)
        assert await bot.service.approve_draft(conversation, "U0SAM", None) == []
        assert (await autonomy.modes(store, rules))["how_to"] == "draft"  # one approval is not a new record


async def test_a_draft_waiting_when_the_conversation_is_resolved_can_never_be_sent(drafting: TestBot):
    someone, conversation = await ask(drafting)
    assert await drafting.service.resolve(conversation, "U0SAM")
    assert await drafting.service.approve_draft(conversation, "U0SAM", None) != []
    await drafting.settle()
    assert all(ARTICLE not in reply for reply in someone.replies)
    handoff = await drafting.store.handoff(conversation)
    assert handoff is not None and handoff.draft is not None and handoff.draft["status"] == "superseded"
    assert await drafting.store.reviewed_drafts("how_to", window=10) == []  # not counted as judged


async def test_staff_answering_in_the_thread_settles_the_draft_as_their_answer(drafting: TestBot):
    someone, conversation = await ask(drafting)
    await someone.says("Open Settings, then Calendars, and connect Outlook.", role=Role.staff)
    await drafting.settle()
    [row] = await drafting.store.reviewed_drafts("how_to", window=10)
    assert row["status"] == "answered" and 0 < row["edit_ratio"] <= 1
    assert await drafting.service.approve_draft(conversation, "U0SAM", None) != []  # never sent after it


async def test_reviewers_tags_on_answers_sent_alone_feed_the_window_and_demote_below_the_threshold(
        policy: Policy, knowledge: KnowledgeBase, store: Store):
    rules = reviewing(policy, auto_share=1.0)
    rules = rules.model_copy(update={"autonomy": rules.autonomy.model_copy(update={"min_sample": 3, "window": 5})})
    async for bot in running(rules, knowledge, store):
        for n in range(3):
            await customer(bot, n).says(CALENDAR)
        await bot.settle()
        items = await store.reviews_of(reason="auto_answer")
        assert len(items) == 3
        assert (await bot.service.tag_review(items[0]["id"], "U0SAM", "correct")).problems == []
        assert (await bot.service.tag_review(items[1]["id"], "U0SAM", "wrong tone")).problems == []
        assert (await autonomy.modes(store, rules))["how_to"] == "auto"  # 2 < min_sample: too few to judge
        assert (await bot.service.tag_review(items[2]["id"], "U0SAM", "outdated article")).problems == []
        assert (await autonomy.modes(store, rules))["how_to"] == "draft"  # 33% < 70%: one step down, at once
        [change] = await store.autonomy_changes("how_to")
        assert change["by"] == "baton" and change["figures"]["sample"] == 3
        assert change["figures"]["approved_unedited"] == pytest.approx(1 / 3, abs=1e-3)
        assert (await autonomy.measure(store, rules, "how_to")).sample == 0  # draft mode starts its own record


async def test_the_policys_sample_holds_on_a_thousand_generated_decisions(policy: Policy, knowledge: KnowledgeBase,
                                                                          sqlite_store: Store):
    """1,000 decisions made up in the shapes the engine makes (a fifth low-confidence, a tenth held, the rest
    answered alone): every low-confidence one and every hold goes to review, and a tenth of the answers."""
    import random

    from bot.model import Decision, Hold, Message, Reply, Severity, Tier
    from bot.service import Service

    service = Service(Engine(reviewing(policy, auto_share=0.1), knowledge), sqlite_store)
    rng = random.Random(15)
    expected = {"auto_answer": 0, "low_confidence": 0, "hold": 0}
    for n in range(1000):
        message = Message(platform="slack", workspace="T1", channel="C1", thread=f"{n}.0", event_id=f"Ev{n}",
                          author=Person(id=f"U{n}"), text="How do I connect my calendar?", at=START)
        async with sqlite_store.transaction():
            conversation, _ = await sqlite_store.conversation_for(message)
        confidence = rng.random()
        actions: list = [Reply(text="Connect it in Settings.", citations=(ARTICLE,))]
        if n % 10 == 0:
            actions = [Hold(text="Hi Sam!", problems=("wrong_person",))]
            expected["hold"] += 1
        expected["low_confidence"] += confidence < 0.5
        decision = Decision(intent="how_to", confidence=confidence, tier=Tier.automated, escalate=False,
                            route=None, severity=Severity.low)
        async with sqlite_store.transaction():
            await service._sample(conversation, message, decision, actions, supervised=False, new_handoff=False)
    answered = 900
    counts = {reason: len(await sqlite_store.reviews_of(reason=reason)) for reason in expected}
    assert counts["low_confidence"] == expected["low_confidence"] and counts["hold"] == expected["hold"]
    print(f"\n1,000 generated decisions: {counts} went to review (expected {expected}, auto answers ~90)")
    assert abs(counts["auto_answer"] - answered * 0.1) <= 3 * (answered * 0.1 * 0.9) ** 0.5, counts
