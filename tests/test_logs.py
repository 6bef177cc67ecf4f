import json

import pytest
import structlog

from bot import logs


@pytest.fixture(autouse=True)
def _restore_structlog():
    yield
    structlog.reset_defaults()


def test_logs_are_json_with_ids_and_no_secrets(capsys):
    logs.configure("info")
    log = structlog.get_logger("t").bind(conversation_id="c1", event_id="Ev1")
    log.info("decided", slack_bot_token="xoxb-123-456-abc", note="key sk-abcdefghijkl leaked", route="billing")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["event"] == "decided" and record["conversation_id"] == "c1" and record["event_id"] == "Ev1"
    assert record["slack_bot_token"] == "**********"
    assert "sk-abcdefghijkl" not in line and "xoxb" not in line
