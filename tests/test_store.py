"""The store on SQLite and on a real PostgreSQL server: same code, same tests."""

import asyncio
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from bot.model import ConversationState, Message, Person, Role
from bot.service import Service
from bot.store import metadata, outbox

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


def msg(text: str, *, event: str, thread: str | None = None, user: str = "U0CUST", role: Role = Role.customer,
        at: datetime = NOW) -> Message:
    return Message(platform="slack", workspace="T0HOME", channel="C0SHARED", thread=thread,
                   author=Person(id=user, name="Dana", role=role, organisation="T0CUSTOMER"), text=text, at=at,
                   event_id=event)


async def test_migrations_match_the_models_and_rerun_cleanly(store):
    await store.migrate()  # a second run is a no-op

    def diff(connection: sa.Connection) -> list:
        return compare_metadata(MigrationContext.configure(connection), metadata)

    async with store.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_inbox_dedupes_event_ids(store):
    def receive(platform: str, event_id: str):
        return store.receive(platform, event_id, kind="message", payload={}, thread=f"{platform}:t")

    assert await receive("slack", "Ev1") is not None
    assert await receive("slack", "Ev1") is None
    assert await receive("discord", "Ev1") is not None


async def test_racing_openers_of_one_thread_agree_on_one_conversation(store):
    results = await asyncio.gather(*(store.conversation_for(msg("hi", event=f"E{i}", thread="171.1"))
                                     for i in range(8)))
    assert len({c.id for c, _ in results}) == 1
    assert sum(created for _, created in results) == 1


async def test_two_claims_at_once_have_exactly_one_owner(store):
    conversation, _ = await store.conversation_for(msg("help", event="E1"))
    await store.transition(conversation.id, ConversationState.escalated, cause="test", actor="baton")
    results = await asyncio.gather(store.claim(conversation.id, "U0ALICE"), store.claim(conversation.id, "U0BOB"))
    winners = [who for won, who in results if won]
    assert len(winners) == 1
    owners = {owner for _, owner in results}
    assert owners == {winners[0]}
    stored = await store.get_conversation(conversation.id)
    assert stored.state is ConversationState.claimed and stored.claimed_by == winners[0]


async def test_a_turn_stores_decision_inputs_rules_and_outbox_atomically(store, engine):
    service = Service(engine, store)
    outcome = await service.handle(msg("You charged us twice! unacceptable", event="E1"))
    assert outcome.decision.escalate
    conversation = await store.get_conversation(outcome.conversation.id)
    assert conversation.state is ConversationState.escalated and conversation.route == "billing"
    (decision,) = await store.decisions_of(conversation.id)
    assert decision["inputs"]["text"] == "You charged us twice! unacceptable"
    assert "billing.wrong_charge" in decision["rules"]
    assert decision["output"]["signals"][0]["evidence"] == "charged us twice"
    queued = await store.outbox_of(conversation.id)
    # the card, the notice to the customer, then the transcript so far for the card's thread
    assert [a["kind"] for a in queued] == ["open_handoff", "reply", "note", "note"]
    assert queued[0]["payload"]["brief"]["urgent_words"] == ["charged us twice", "unacceptable"]
    states = [t["to_state"] for t in await store.transitions_of(conversation.id)]
    assert states == ["open", "escalated"]


async def test_an_action_is_marked_sent_once(store, engine):
    await Service(engine, store).handle(msg("You charged us twice", event="E1"))
    first = (await store.take_due())[0]
    assert await store.mark_sent(first["id"]) is True
    assert await store.mark_sent(first["id"]) is False
    assert first["id"] not in [a["id"] for a in await store.take_due()]


async def test_failed_actions_wait_for_their_retry_time(store, engine):
    await Service(engine, store).handle(msg("You charged us twice", event="E1"))
    action = (await store.take_due())[0]
    later = datetime.now(UTC) + timedelta(minutes=5)
    await store.mark_failed(action["id"], "HTTP 429", retry_at=later)
    assert action["id"] not in [a["id"] for a in await store.take_due()]
    assert action["id"] in [a["id"] for a in await store.take_due(now=later + timedelta(seconds=1))]
    async with store.engine.begin() as conn:
        row = (await conn.execute(sa.select(outbox).where(outbox.c.id == action["id"]))).mappings().one()
    assert row["attempts"] == 1 and row["last_error"] == "HTTP 429"


async def test_duplicate_event_is_answered_once(store, engine):
    service = Service(engine, store)
    first = await service.handle(msg("You charged us twice", event="E1"))
    again = await service.handle(msg("You charged us twice", event="E1"))
    assert not first.duplicate and again.duplicate
    assert len(await store.outbox_of(first.conversation.id)) == 4


async def test_outbox_rows_are_taken_in_order_per_conversation_and_never_twice(store, engine):
    service = Service(engine, store)
    one = await service.handle(msg("You charged us twice", event="E1", thread="1.1"))
    two = await service.handle(msg("You charged us twice", event="E2", thread="2.2"))
    first, second = await asyncio.gather(store.take_due(), store.take_due())
    taken = first + second
    # one row per conversation (the oldest), each taken by exactly one of the two workers
    assert sorted(r["conversation_id"] for r in taken) == sorted([one.conversation.id, two.conversation.id])
    assert all(r["kind"] == "open_handoff" for r in taken)
    assert await store.take_due() == []  # both leased; the rows behind them wait for them
    for row in taken:
        await store.mark_sent(row["id"])
    assert [r["kind"] for r in await store.take_due()] == ["reply", "reply"]


async def test_second_contact_on_the_same_topic_within_a_week_escalates(store, engine):
    service = Service(engine, store)
    first = await service.handle(msg("The notetaker didn't join my sales call", event="E1", thread="100.1"))
    assert not first.decision.escalate
    second = await service.handle(msg("The notetaker didn't join my sales call again", event="E2", thread="200.1",
                                      at=NOW + timedelta(days=2)))
    assert second.decision.escalate
    assert any(r.startswith("repeat_contact.") for r in second.decision.rules)


async def test_staff_reply_in_the_thread_takes_over(store, engine):
    service = Service(engine, store)
    first = await service.handle(msg("The notetaker didn't join", event="E1", thread="100.1"))
    await service.handle(msg("I'm on it", event="E2", thread="100.1", user="U0STAFF", role=Role.staff))
    conversation = await store.get_conversation(first.conversation.id)
    assert conversation.state is ConversationState.claimed and conversation.claimed_by == "U0STAFF"
    later = await service.handle(msg("thanks! also how do I connect outlook?", event="E3", thread="100.1"))
    assert later.decision.reply is None
    assert [a.kind for a in later.actions] == ["mirror"]


async def test_prior_contacts_are_stored_in_utc(store):
    conversation, _ = await store.conversation_for(msg("hi", event="E1"))
    (prior,) = await store.prior_contacts("slack", "U0CUST", since=NOW - timedelta(days=1))
    assert prior.conversation_id == conversation.id
    assert prior.started_at == NOW


async def test_a_courier_for_some_platforms_takes_only_their_conversations(store, engine):
    service = Service(engine, store)
    await service.handle(msg("You charged us twice", event="E1"))
    on_discord = msg("You charged us twice", event="D1").model_copy(update={"platform": "discord"})
    await service.handle(on_discord)
    assert await store.next_due(platforms={"slack"}) is not None
    slack_only = await store.take_due(platforms={"slack"})
    assert slack_only and {r["conversation_id"] for r in slack_only} == {
        (await store.find_conversation("slack", "T0HOME", "C0SHARED", "E1")).id}
    both = await store.take_due(platforms={"slack", "discord"})  # the Slack rows are leased already
    assert {r["conversation_id"] for r in both} == {
        (await store.find_conversation("discord", "T0HOME", "C0SHARED", "D1")).id}


async def test_a_cursor_only_moves_forward(store):
    await store.advance_cursor("discord", "100", 5)
    await store.advance_cursor("discord", "100", 3)
    await store.advance_cursor("discord", "200", 2**62)  # Discord ids need 64 bits
    assert await store.cursors_of("discord") == {"100": 5, "200": 2**62}
    await store.advance_cursor("discord", "100", 9)
    assert (await store.cursors_of("discord"))["100"] == 9 and await store.cursors_of("slack") == {}


async def test_a_stream_of_urgent_work_cannot_starve_a_waiting_turn_on_sqlite():
    """Storing events goes before the turns waiting for SQLite's connection, but at most URGENT_RUN
    times in a row: a steady stream of events would otherwise keep every worker waiting."""
    from bot.store import URGENT_RUN, _Gate

    gate, order = _Gate(), []

    async def one(name: str, urgent: bool) -> None:
        async with gate.hold(urgent=urgent):
            order.append(name)

    async with gate.hold():  # busy: everyone below queues up
        turn = asyncio.create_task(one("turn", False))
        events = [asyncio.create_task(one(f"event {n}", True)) for n in range(3 * URGENT_RUN)]
        while len(gate._urgent) + len(gate._normal) < len(events) + 1:
            await asyncio.sleep(0)  # a yield, not a wait: until every task is queued
    await asyncio.gather(turn, *events)
    assert order.index("turn") == URGENT_RUN  # after URGENT_RUN events, not after all of them
    assert order[:URGENT_RUN] == [f"event {n}" for n in range(URGENT_RUN)]


async def test_text_no_database_can_keep_is_repaired_not_refused(store):
    """A lone surrogate (a JSON "\\ud83d" escape) cannot be encoded as UTF-8 and NUL is refused by
    PostgreSQL: each becomes U+FFFD, and the message is stored."""
    message = Message(platform="slack", workspace="T1", channel="C1", thread="1.0", author=Person(id="U1"),
                      text="broken \ud83d emoji and a \x00 byte", at=datetime.now(UTC), event_id="e-repair")
    assert message.text == "broken \ufffd emoji and a \ufffd byte"
    async with store.transaction():
        conversation, _ = await store.conversation_for(message)
        await store.record_message(conversation.id, message)
    [line] = await store.transcript(conversation.id)
    assert line["text"] == "broken \ufffd emoji and a \ufffd byte"
