"""The command line, run as a newcomer would: ``python -m bot ...`` in a subprocess."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from openai_fake import FakeOpenAI, stand_in

ROOT = Path(__file__).resolve().parent.parent
CONTRACT_KEYS = {"id", "intent", "confidence", "tier", "escalate", "route", "severity", "signals", "details",
                 "missing", "reply", "citations", "rules"}


def baton(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "bot", *args], input=stdin, capture_output=True, text=True,
                          env=full_env, cwd=cwd or ROOT, timeout=120, check=False)


def test_triage_in_worker_processes_prints_what_one_process_prints_in_order():
    texts = ["You charged us twice!", "how do I connect outlook?", "the recording of our standup is missing",
             "hi", "is notewise GDPR compliant?", "we are moving to another tool next month"]
    lines = [json.dumps({"id": i, "text": f"{texts[i % len(texts)]} ({i})", "now": "2026-11-23T10:00:00"})
             for i in range(150)]
    lines.insert(70, "{not json")
    stdin = "\n".join(lines) + "\n"
    one = baton("triage", "-", "--jobs", "1", stdin=stdin)
    three = baton("triage", "-", "--jobs", "3", stdin=stdin)
    assert one.returncode == 0 and three.returncode == 0, (one.stderr, three.stderr)
    assert three.stdout == one.stdout
    out = [json.loads(line) for line in three.stdout.splitlines()]
    assert len(out) == 151 and "error" in out[70] and [o["id"] for o in out if "error" not in o] == list(range(150))


def test_triage_follows_the_contract_in_order():
    lines = [
        {"id": 1, "text": "You charged us twice!"},
        {"id": "b", "text": "how do I connect outlook?", "now": "2026-11-23T10:00:00", "tz": "Europe/Paris"},
        {"id": 3, "text": "Is the app down? nobody can log in"},
    ]
    result = baton("triage", "-", stdin="\n".join(json.dumps(x) for x in lines))
    assert result.returncode == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["id"] for o in out] == [1, "b", 3]
    for o in out:
        assert set(o) == CONTRACT_KEYS
        assert o["tier"] in {"automated", "assisted", "human"}
        assert o["severity"] in {"low", "medium", "high", "critical"}
        assert set(o["details"]) == {"meeting_name", "date", "time", "timezone"}
    assert out[0]["escalate"] and out[0]["route"] == "billing"
    assert out[0]["signals"][0] == {"kind": "billing", "severity": "high", "evidence": "charged us twice"}
    assert not out[1]["escalate"] and out[1]["route"] is None
    assert out[2]["severity"] == "critical"


def test_a_malformed_line_names_its_number_and_the_rest_go_on(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "text": "hello"}\nnot json\n{"id": 3}\n\n{"id": 4, "text": "x", "tz": "Mars/Base"}\n'
                   '{"id": 5, "text": "refund please"}\n')
    result = baton("triage", str(src))
    assert result.returncode == 0
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["id"] for o in out] == [1, None, 3, 4, 5]
    assert "line 2" in out[1]["error"] and "not valid JSON" in out[1]["error"]
    assert "line 3" in out[2]["error"] and "text" in out[2]["error"]
    assert "line 5" in out[3]["error"] and "IANA" in out[3]["error"]
    assert out[4]["escalate"] is True


def test_triage_refuses_a_bad_policy_with_file_and_key(tmp_path):
    bad = tmp_path / "p.toml"
    bad.write_text("[meta]\nname = 'x'\n")
    result = baton("triage", "-", stdin="", env={"BATON_POLICY": str(bad)})
    assert result.returncode == 2
    assert str(bad) in result.stderr and "negation" in result.stderr


def test_missing_input_file_is_a_clear_error():
    result = baton("triage", "/nonexistent/file.jsonl")
    assert result.returncode == 2 and "cannot read /nonexistent/file.jsonl" in result.stderr


def test_eval_reports_rates_per_category(tmp_path):
    rows = [
        {"id": "a", "text": "you charged me twice", "category": "escalate:billing", "source": "mine:train"},
        {"id": "b", "text": "my account was hacked", "category": "escalate:security", "source": "mine:train"},
        {"id": "c", "text": "how do I connect my calendar?", "category": "simple_question", "source": "mine:train"},
        {"id": "d", "text": "please delete my account", "category": "other", "source": "mine:train"},
    ]
    src = tmp_path / "labelled.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows))
    result = baton("eval", str(src), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["categories"]["escalate:billing"] == {"n": 1, "escalation_rate": 1.0, "right_kind_rate": 1.0,
                                                         "no_answer_rate": 0.0, "silent": 0}
    assert report["categories"]["other"]["escalation_rate"] == 1.0
    assert report["calm_false_alarm_rate"] == 0.5
    assert report["calm_high_risk_signal_rate"] == 0.5
    assert report["categories"]["simple_question"]["silent"] == 0  # answered from the help center
    assert report["silent"] == {"rows": 0, "rate": 0.0, "categories": {k: 0 for k in report["categories"]}}


def test_run_with_an_incomplete_slack_configuration_says_what_to_set(tmp_path):
    result = baton("run", env={"SLACK_BOT_TOKEN": "xoxb-secret-value", "SLACK_SIGNING_SECRET": "",
                               "BATON_CUSTOMER_CHANNELS": "", "BATON_INTERNAL_CHANNEL": "", "DISCORD_TOKEN": ""},
                   cwd=tmp_path)
    assert result.returncode == 2
    for variable in ("SLACK_SIGNING_SECRET", "BATON_CUSTOMER_CHANNELS", "BATON_INTERNAL_CHANNEL"):
        assert variable in result.stderr
    assert "xoxb-secret-value" not in result.stderr + result.stdout
    assert not (tmp_path / "baton.db").exists()  # nothing started


def test_run_with_only_a_discord_token_says_discord_is_not_built_yet(tmp_path):
    result = baton("run", env={"SLACK_BOT_TOKEN": "", "SLACK_SIGNING_SECRET": "", "DISCORD_TOKEN": "abc.def"},
                   cwd=tmp_path)
    assert result.returncode == 2 and "Discord" in result.stderr and "abc.def" not in result.stderr


def test_migrate_creates_the_database_and_hides_passwords(tmp_path):
    result = baton("migrate", env={"BATON_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "x.db").exists()


def test_the_readme_sample_file_runs():
    result = baton("triage", "examples/messages.jsonl")
    assert result.returncode == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert out and all("error" not in o for o in out)


# ---- the bars of issue #2 on the public dev file, when ../shared/eval is present ----

BARS = {"escalate:billing": 0.95, "escalate:security": 0.95, "escalate:churn": 0.95, "escalate:frustration": 0.80}


@pytest.fixture(scope="module")
def dev_report() -> dict:
    path = ROOT.parent / "shared" / "eval" / "dev_messages.jsonl"
    if not path.exists():
        pytest.skip("../shared/eval/dev_messages.jsonl is not present")
    result = baton("eval", str(path), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize(("category", "bar"), BARS.items())
def test_dev_escalation_recall_meets_the_bar(dev_report, category, bar):
    assert dev_report["categories"][category]["escalation_rate"] >= bar


def test_dev_false_alarms_on_calm_rows_stay_under_five_percent(dev_report):
    assert dev_report["calm_false_alarm_rate"] <= 0.05
    assert dev_report["calm_high_risk_signal_rate"] <= 0.05


# ---- the playground and shadow-mode replay ----

def test_the_playground_holds_a_conversation_on_standard_input(tmp_path):
    script = "\n".join([
        "How do I delete a recording?",
        "/new",
        "/tz America/Los_Angeles",
        "The recording of our Weekly Sync is missing",
        "it was yesterday at 3pm",
        "yes",
        "/staff Hi, I'm on it",
        "/bogus",
    ]) + "\n"
    result = baton(env={"SLACK_BOT_TOKEN": "", "DISCORD_TOKEN": "", "BATON_DATABASE_URL": ""}, cwd=tmp_path,
                   stdin=script)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # the customer's side
    assert "baton> To delete a recording, open it" in out
    assert "https://help.notewise.example/articles/delete-recording" in out
    assert "could you tell me the date of the meeting, the time it started?" not in out
    assert "baton> So our team can look into this, could you tell me the date of the meeting and the time it started?" \
        in out
    assert ": is that right?" in out and "15:00 PST" in out
    assert "won't need to repeat yourself" in out
    # set apart: what staff would see
    assert "  │ state escalated · intent meeting_issue" in out
    assert "  │ HANDOFF to support" in out and "  │ Details: meeting_name=Weekly Sync" in out
    assert "claimed" in out and "unknown command /bogus" in out
    assert (tmp_path / "baton.db").exists()  # a real SQLite store in the working folder


def test_the_playground_refuses_an_unreachable_database(tmp_path):
    result = baton(env={"BATON_DATABASE_URL": "sqlite:////nonexistent/dir/x.db"}, cwd=tmp_path, stdin="")
    assert result.returncode == 2 and "cannot open the database" in result.stderr
    assert "Traceback" not in result.stderr


def test_replay_compares_baton_with_what_humans_did(tmp_path):
    result = baton("replay", "examples/replay.jsonl", "--json", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    by_id = {row["id"]: row for row in lines if "id" in row}
    assert by_id["c1"]["agreement"] == "agree" and not by_id["c1"]["escalated"]
    assert by_id["c1"]["turns"][0]["reply"].endswith("https://help.notewise.example/articles/connect-calendars")
    assert by_id["c2"]["agreement"] == "agree, same route" and by_id["c2"]["escalated_at_turn"] == 1
    assert "intent" not in by_id["c2"]["turns"][1]  # the agent's reply: Baton stays silent
    assert by_id["c3"]["escalated_at_turn"] == 3 and by_id["c3"]["route"] == "support"
    assert by_id["c4"]["agreement"] == "extra escalation"
    summary = lines[-1]["summary"]
    assert by_id["c6"]["agreement"] == "agree, same route"
    assert summary == {"conversations": 6, "with_outcome": 6, "agree": 5, "missed_escalations": 0,
                       "extra_escalations": 1, "same_route": 4, "different_route": 0, "bad_lines": 1}
    assert "line 7: skipped: not valid JSON" in result.stderr


def test_replay_prints_each_turn_for_people(tmp_path):
    src = tmp_path / "r.jsonl"
    src.write_text('{"id": "x", "messages": [{"role": "customer", "text": "I want to talk to a human"}], '
                   '"outcome": {"escalated": false}}\n{"id": "y", "messages": []}\n')
    result = baton("replay", str(src))
    assert result.returncode == 0, result.stderr
    assert "== conversation x" in result.stdout and "escalate to" in result.stdout
    assert "extra escalation" in result.stdout
    assert "line 2: skipped" in result.stderr


def test_replay_reports_the_triage_contract_per_customer_turn_in_the_customers_zone(tmp_path):
    result = baton("replay", "examples/replay.jsonl", "--json")
    assert result.returncode == 0, result.stderr
    c6 = next(json.loads(line) for line in result.stdout.splitlines() if '"id": "c6"' in line)
    first = c6["turns"][0]
    assert CONTRACT_KEYS - {"id"} <= set(first) and {"turn", "role", "held", "state"} <= set(first)
    assert first["details"]["meeting_name"] == "Team Standup"
    assert first["details"]["timezone"] == "Europe/Berlin" and "timezone" not in first["missing"]  # from "tz"
    assert first["missing"] and first["state"] == "gathering"
    # the same conversation without "tz": Baton has to ask for the zone
    convo = json.loads(next(line for line in (ROOT / "examples" / "replay.jsonl").read_text().splitlines()
                            if '"id": "c6"' in line))
    del convo["tz"]
    src = tmp_path / "no-tz.jsonl"
    src.write_text(json.dumps(convo) + "\n" + json.dumps({**convo, "id": "bad", "tz": "Mars/Base"}) + "\n")
    result = baton("replay", str(src), "--json")
    assert result.returncode == 0, result.stderr
    [row, summary] = [json.loads(line) for line in result.stdout.splitlines()]
    assert "timezone" in row["turns"][0]["missing"] and row["turns"][0]["details"]["timezone"] is None
    assert summary["summary"]["bad_lines"] == 1
    assert "line 2: skipped: tz:" in result.stderr and "IANA" in result.stderr


def test_replay_prints_signals_and_details_for_people(tmp_path):
    result = baton("replay", "examples/replay.jsonl")
    assert result.returncode == 0, result.stderr
    assert "signals: billing:" in result.stdout  # c2's charge, with the customer's words
    assert "details: meeting_name=Team Standup" in result.stdout and "timezone=Europe/Berlin" in result.stdout


# ---- eval: risk escalations apart from "the help center had no answer", and silent rows ----


def test_eval_scores_a_no_answer_handoff_apart_from_risk_escalations(tmp_path):
    question = "Which street is your head office on, and is there parking for visitors?"
    decided = json.loads(baton("triage", stdin=json.dumps({"id": 1, "text": question})).stdout)
    assert decided["escalate"] and "knowledge.no_answer" in decided["rules"]  # the case this test is about
    src = tmp_path / "rows.jsonl"
    src.write_text(json.dumps({"id": 1, "text": question, "category": "simple_question"}) + "\n")
    result = baton("eval", str(src), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["categories"]["simple_question"]["escalation_rate"] == 0.0  # not a false alarm
    assert report["categories"]["simple_question"]["no_answer_rate"] == 1.0
    assert report["calm_false_alarm_rate"] == 0.0 and report["no_answer"] == {"rows": 1, "rate": 1.0}
    text = baton("eval", str(src)).stdout
    assert "help center had no answer (not counted as escalations): 1/1" in text
    assert "silent rows (no reply, no handoff): 0/1" in text


def _decision(**fields):
    from bot.model import Decision, Severity, Tier

    base = {"intent": "other", "confidence": 0.5, "tier": Tier.automated, "escalate": False, "route": None,
            "severity": Severity.low}
    return Decision(**{**base, **fields})


def test_the_report_sorts_every_outcome_and_counts_silent_rows(policy):
    from bot.evaluation import LabelledRow, Report, outcome_of
    from bot.model import Severity, Signal, Tier

    charge = Signal(kind="billing", severity=Severity.high, evidence="charged twice", rule="billing.x")
    cases = [
        ("escalate:billing", _decision(escalate=True, route="billing", severity=Severity.high, signals=(charge,),
                                       rules=("billing.x", "route.billing"), reply="a person"), "risk"),
        ("other", _decision(escalate=True, tier=Tier.human, route="success", rules=("tier.cancellation.human",),
                            reply="a person"), "risk"),
        ("simple_question", _decision(escalate=True, route="support", rules=("knowledge.no_answer",),
                                      reply="a person"), "no_answer"),
        ("simple_question", _decision(escalate=True, route="billing", rules=("tier.billing.assisted",),
                                      reply="a person"), "handoff"),
        ("simple_question", _decision(reply="the answer"), "reply"),
        ("other", _decision(), "silent"),
        ("escalate:billing", _decision(), "silent"),
    ]
    report = Report(policy)
    for n, (category, decision, expected) in enumerate(cases):
        assert outcome_of(decision, policy) == expected
        assert report.add(LabelledRow(id=n, text="x", category=category, source="mine:train"), decision) == expected
    data = report.as_dict()
    assert data["silent"] == {"rows": 2, "rate": round(2 / 7, 4),
                              "categories": {"escalate:billing": 1, "other": 1, "simple_question": 0}}
    assert data["categories"]["escalate:billing"]["escalation_rate"] == 0.5
    assert data["calm_false_alarm_rate"] == 0.2  # only the human-tier intent, of five calm rows
    lines = list(report.lines())
    assert "silent rows (no reply, no handoff): 2/7 = 0.286" in lines
    assert any(line.startswith("handed off for another reason") and "1/7" in line for line in lines)


# ---- triage, replay and eval with the configured language model (a local fake endpoint) ----

NOW = "2026-11-18T10:00:00+01:00"
SARCASM = "Great, so I get to explain it again. How do I export notes to HubSpot?"
DISPUTE = "You charged us twice for November and I want a refund."


@pytest.fixture
async def fake():
    server = FakeOpenAI()
    await server.start()
    yield server
    await server.close()


def model_env(fake, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "BATON_")) or k == "BATON_CACHE_DIR"}
    env.update({"OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": str(fake.server.make_url("/v1")),
                "BATON_MODEL": "fake-model", **extra})
    return env


async def baton_async(*args: str, stdin: str = "", env: dict[str, str], cwd: Path = ROOT) -> tuple[int, str, str]:
    """``python -m bot ...`` as a process, while the test's event loop serves the fake endpoint."""
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", *args, env=env, cwd=cwd,
                                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                   stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def jsonl(*texts: str) -> str:
    return "".join(json.dumps({"id": n, "text": t}) + "\n" for n, t in enumerate(texts))


async def test_triage_asks_the_model_exactly_as_a_live_conversation_does(fake, bot, tmp_path):
    from datetime import datetime

    import openai

    from bot.llm import LanguageModel
    from bot.model import Message, Person
    from bot.service import Service
    from bot.store import Store

    texts = [SARCASM, "How do I connect my Outlook calendar?", DISPUTE, "The recording of our Weekly Sync is missing"]
    code, out, err = await baton_async("triage", "--now", NOW, "--tz", "Europe/Paris", stdin=jsonl(*texts),
                                       env=model_env(fake))
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["escalate"] and "llm.frustration" in rows[0]["rules"]  # the rules alone answer it
    assert "llm.answer" in rows[1]["rules"] and "In short:" in rows[1]["reply"]  # grounded in the passages
    assert rows[1]["citations"] == ["https://help.notewise.example/articles/connect-calendars"]
    assert "llm.answer" not in rows[2]["rules"] and rows[2]["route"] == "billing"
    passages = [fake.data_of(r)["passages"] for r in fake.of("TurnOpinion")]
    assert len(passages) == 4 and sum(bool(p) for p in passages) >= 1

    # The same messages as the first message of a live conversation, through the service.
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'live.db'}")
    await store.migrate()
    client = openai.AsyncOpenAI(base_url=str(fake.server.make_url("/v1")), api_key="test-key", max_retries=0)
    service = Service(bot, store, llm=LanguageModel(client, "fake-model", store), first_reply=10)
    try:
        for n, text in enumerate(texts):
            outcome = await service.handle(Message(
                platform="slack", workspace="T0", channel="C0", thread=None, text=text, event_id=f"E{n}",
                at=datetime.fromisoformat(NOW), author=Person(id=f"U{n}", timezone="Europe/Paris")))
            assert outcome.decision is not None
            assert {"id": n, **outcome.decision.contract()} == rows[n]
    finally:
        await store.close()


async def test_offline_forces_the_rules_alone_even_with_a_key(fake):
    text = jsonl(SARCASM, "How do I connect my Outlook calendar?")
    code, with_flag, err = await baton_async("triage", "--offline", "--now", NOW, stdin=text, env=model_env(fake))
    assert code == 0, err
    no_key = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    code, without_key, err = await baton_async("triage", "--now", NOW, stdin=text, env=no_key)
    assert code == 0, err
    assert with_flag == without_key and fake.requests == []
    assert "llm." not in with_flag


class GatedOpenAI(FakeOpenAI):
    """Holds each call until ``lanes`` of them are in flight at once; remembers the most ever in flight."""

    def __init__(self, lanes: int) -> None:
        super().__init__()
        self.lanes = lanes
        self.in_flight = 0
        self.most = 0
        self.full = asyncio.Event()

    async def _complete(self, request: Any) -> Any:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        if self.in_flight >= self.lanes:
            self.full.set()
        try:
            await self.full.wait()
            return await super()._complete(request)
        finally:
            self.in_flight -= 1


async def test_model_calls_run_a_few_at_a_time_and_the_output_keeps_the_input_order():
    from bot.cli import CONCURRENCY

    gated = GatedOpenAI(CONCURRENCY)
    await gated.start()
    try:
        texts = [f"How do I connect calendar number {n} to my account?" for n in range(30)]
        code, out, err = await baton_async("triage", stdin=jsonl(*texts), env=model_env(gated))
    finally:
        await gated.close()
    assert code == 0, err
    assert [json.loads(line)["id"] for line in out.splitlines()] == list(range(30))
    assert gated.most == CONCURRENCY and len(gated.of("TurnOpinion")) == 30


async def test_a_failing_call_leaves_that_rows_offline_decision_and_every_line_is_printed(fake):
    broken = "Great, so I get to explain it again. BROKEN. How do I export notes to HubSpot?"
    fake.brain = lambda schema, data: ("{not json" if "BROKEN" in data.get("customer_message", "")
                                       else stand_in(schema, data))
    text = jsonl(SARCASM, broken, DISPUTE)
    code, out, err = await baton_async("triage", "--now", NOW, stdin=text, env=model_env(fake))
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    offline = [json.loads(line) for line in (await baton_async("triage", "--offline", "--now", NOW, stdin=text,
                                                                env=model_env(fake)))[1].splitlines()]
    assert [r["id"] for r in rows] == [0, 1, 2]
    assert "llm.frustration" in rows[0]["rules"]  # the model's opinion where it answered
    assert rows[1] == offline[1] and "llm.frustration" not in rows[1]["rules"]  # the rules' where it did not
    assert "1 without an answer" in err and "test-key" not in err


async def test_an_unreachable_endpoint_gives_the_offline_output(tmp_path):
    from bot_process import free_port

    text = jsonl(SARCASM, DISPUTE, "How do I connect my Outlook calendar?", "hello?", "is the app down?")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "BATON_")) or k == "BATON_CACHE_DIR"}
    code, offline, err = await baton_async("triage", "--now", NOW, stdin=text, env=env)
    assert code == 0, err
    env.update({"OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1"})
    code, out, err = await baton_async("triage", "--now", NOW, stdin=text, env=env)
    assert code == 0, err
    assert out == offline and "5 without an answer" in err


async def test_replay_and_eval_ask_the_model_too(fake, tmp_path):
    src = tmp_path / "r.jsonl"
    src.write_text(json.dumps({"id": "s", "messages": [{"role": "customer", "text": SARCASM}],
                               "outcome": {"escalated": True}}) + "\n")
    code, out, err = await baton_async("replay", str(src), "--json", env=model_env(fake))
    assert code == 0, err
    row = json.loads(out.splitlines()[0])
    assert row["agreement"] == "agree" and "llm.frustration" in row["turns"][0]["rules"]
    code, out, err = await baton_async("replay", str(src), "--json", "--offline", env=model_env(fake))
    assert json.loads(out.splitlines()[0])["agreement"] == "missed escalation"

    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"id": 1, "text": SARCASM, "category": "escalate:frustration"}) + "\n")
    code, out, err = await baton_async("eval", str(rows), "--json", env=model_env(fake))
    assert code == 0, err
    report = json.loads(out)
    assert report["categories"]["escalate:frustration"]["escalation_rate"] == 0.0
    assert report["model_assisted"]["categories"]["escalate:frustration"]["escalation_rate"] == 1.0
    assert report["model_assisted"]["silent"]["rows"] == 0 and "silent" in report
