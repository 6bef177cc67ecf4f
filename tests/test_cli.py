"""The command line, run as a newcomer would: ``python -m bot ...`` in a subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONTRACT_KEYS = {"id", "intent", "confidence", "tier", "escalate", "route", "severity", "signals", "details",
                 "missing", "reply", "citations", "rules"}


def baton(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "bot", *args], input=stdin, capture_output=True, text=True,
                          env=full_env, cwd=cwd or ROOT, timeout=120, check=False)


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
    assert report["categories"]["escalate:billing"] == {"n": 1, "escalation_rate": 1.0, "right_kind_rate": 1.0}
    assert report["categories"]["other"]["escalation_rate"] == 1.0
    assert report["calm_false_alarm_rate"] == 0.5
    assert report["calm_high_risk_signal_rate"] == 0.5


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
    assert summary == {"conversations": 5, "with_outcome": 5, "agree": 4, "missed_escalations": 0,
                       "extra_escalations": 1, "same_route": 3, "different_route": 0, "bad_lines": 1}
    assert "line 6: skipped" in result.stderr


def test_replay_prints_each_turn_for_people(tmp_path):
    src = tmp_path / "r.jsonl"
    src.write_text('{"id": "x", "messages": [{"role": "customer", "text": "I want to talk to a human"}], '
                   '"outcome": {"escalated": false}}\n{"id": "y", "messages": []}\n')
    result = baton("replay", str(src))
    assert result.returncode == 0, result.stderr
    assert "== conversation x" in result.stdout and "escalate to" in result.stdout
    assert "extra escalation" in result.stdout
    assert "line 2: skipped" in result.stderr
