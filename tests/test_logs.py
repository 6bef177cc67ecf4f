import json

import pytest
import structlog

from bot import logs


@pytest.fixture(autouse=True)
def _restore_structlog():
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


def test_logs_are_json_with_ids_and_no_secrets(capsys):
    logs.configure("info")
    log = structlog.get_logger("t").bind(conversation_id="c1", event_id="Ev1")
    log.info("decided", slack_bot_token="xoxb-123-456-abc", note="key sk-abcdefghijkl leaked", route="billing")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["event"] == "decided" and record["conversation_id"] == "c1" and record["event_id"] == "Ev1"
    assert record["slack_bot_token"] == "**********"
    assert "sk-abcdefghijkl" not in line and "xoxb" not in line


def test_with_a_file_everything_logged_goes_there_and_nothing_to_the_terminal(tmp_path, capsys):
    import logging
    import warnings

    path = tmp_path / "baton.log"
    logs.configure("info", file=path)
    try:
        structlog.get_logger("t").warning("llm_call_failed", api_key="sk-abcdefghijkl", error="timed out")
        logging.getLogger("some.library").warning("a library's own warning")
        warnings.warn("a deprecation nobody asked for", UserWarning, stacklevel=1)
    finally:
        logs.configure("warning")  # back to standard error; the file is closed
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
    text = path.read_text()
    record = json.loads(text.splitlines()[0])
    assert record["event"] == "llm_call_failed" and record["level"] == "warning" and record["api_key"] == "**********"
    assert "WARNING some.library: a library's own warning" in text
    assert "a deprecation nobody asked for" in text and "sk-abcdefghijkl" not in text


def test_below_the_level_nothing_is_written(tmp_path):
    path = tmp_path / "quiet.log"
    logs.configure("warning", file=path)
    try:
        structlog.get_logger("t").info("decided", route="billing")
    finally:
        logs.configure("warning")
    assert path.read_text() == ""
