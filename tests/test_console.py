"""The playground (``python -m bot`` with no platform tokens) as a person uses it.

What is about the terminal (line editing, history, Ctrl-C, Ctrl-D) runs the real process on a real
pseudo-terminal; the rest drives it through scripted standard input. Nothing sleeps: the tests wait
for the process's output (select on the terminal) or for it to end.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import structlog
import structlog.testing
from openai_fake import FakeOpenAI

ROOT = Path(__file__).resolve().parent.parent
UP, LEFT = "\x1b[A", "\x1b[D"


def playground_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "BATON_", "SLACK_", "DISCORD_")) or k == "BATON_CACHE_DIR"}
    env.update({"TERM": "xterm", "INPUTRC": "/dev/null", "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}, **extra)
    return env


class Terminal:
    """``python -m bot ARGS`` on a pseudo-terminal: its standard input, output and error."""

    def __init__(self, cwd: Path, *args: str, env: dict[str, str] | None = None) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: a session leader with the terminal as its controlling terminal
            # Start as from a shell, whatever the test process did to its signals (exec keeps a mask and
            # ignored signals).
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            os.chdir(cwd)
            os.execve(sys.executable, [sys.executable, "-m", "bot", *args], env or playground_env())
        self.pid, self.fd = pid, fd
        self.output = ""
        self.seen = 0
        self.status: int | None = None

    def send(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def expect(self, text: str, timeout: float = 60) -> str:
        """Wait until ``text`` appears after what was already expected; return the output up to it."""
        deadline = time.monotonic() + timeout
        while (at := self.output.find(text, self.seen)) < 0:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"timed out waiting for {text!r}; output so far:\n{self.output}"
            if not self._read(remaining):
                raise AssertionError(f"the process ended before {text!r}; output:\n{self.output}")
        upto = self.output[self.seen:at + len(text)]
        self.seen = at + len(text)
        return upto

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: the child has gone and the terminal is closed
            return False
        self.output += chunk.decode(errors="replace")
        return bool(chunk)

    def wait(self, timeout: float = 60) -> int:
        """Read to the end and return the exit code."""
        deadline = time.monotonic() + timeout
        while self._read(max(deadline - time.monotonic(), 0.001)):
            assert time.monotonic() < deadline, f"the process did not end; output:\n{self.output}"
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        self.status = os.waitstatus_to_exitcode(status)
        return self.status

    def close(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, 9)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            os.close(self.fd)


@pytest.fixture
def terminal(tmp_path: Path) -> Any:
    opened: list[Terminal] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Terminal:
        opened.append(Terminal(tmp_path, *args, env=env))
        return opened[-1]

    yield start
    for term in opened:
        term.close()


def playground(cwd: Path, script: list[str], *args: str, env: dict[str, str] | None = None,
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *args], input="\n".join(script) + "\n", text=True,
                          capture_output=True, cwd=cwd, env=env or playground_env(), timeout=120, check=False)


# ---- at a terminal ----


def test_arrow_up_recalls_a_line_and_the_arrow_keys_edit_it(terminal: Any) -> None:
    term = terminal()
    term.expect("you> ")
    term.send("/tz UTC\r")
    term.expect("(your time zone is now UTC)")
    term.expect("you> ")
    term.send(UP + LEFT * 3 + "Etc/" + "\r")  # the previous line, edited in its middle
    term.expect("(your time zone is now Etc/UTC)")
    term.expect("you> ")
    term.send("/quit\r")
    assert term.wait() == 0


def test_ctrl_c_at_the_prompt_leaves_cleanly(terminal: Any) -> None:
    term = terminal()
    term.expect("you> ")
    term.send("How do I delete a record")  # half typed
    term.expect("a record")  # echoed: the prompt is reading the line
    term.send("\x03")
    try:
        term.expect("Bye.", timeout=10)
    except AssertionError:
        # CPython's readline misses a SIGINT that lands after it prepared the terminal and before it waits for a
        # key (it then waits for the next key): a person presses Ctrl-C again, and so does this test.
        term.send("\x03")
        term.expect("Bye.")
    assert term.wait() == 0
    assert "Traceback" not in term.output and "KeyboardInterrupt" not in term.output


def test_ctrl_d_leaves_cleanly(terminal: Any) -> None:
    term = terminal()
    term.expect("you> ")
    term.send("How do I delete a recording?\r")
    term.expect("baton> ")
    term.expect("you> ")
    term.send("\x04")
    term.expect("Bye.")
    assert term.wait() == 0
    assert "Traceback" not in term.output


class Hanging(FakeOpenAI):
    """A model endpoint that takes every request and never answers; ``arrived`` is set at the first."""

    def __init__(self) -> None:
        super().__init__(failures=["hang"] * 10)
        self.arrived = asyncio.Event()

    async def _complete(self, request: Any) -> Any:
        self.arrived.set()
        return await super()._complete(request)


async def test_ctrl_c_while_baton_waits_for_the_model_leaves_cleanly(terminal: Any) -> None:
    fake = Hanging()
    url = await fake.start()
    try:
        term = terminal(env=playground_env(OPENAI_API_KEY="test-key", OPENAI_BASE_URL=url))
        await asyncio.to_thread(term.expect, "you> ")
        term.send("How do I delete a recording?\r")
        await asyncio.wait_for(fake.arrived.wait(), 60)  # the turn is waiting for the model now
        term.send("\x03")
        await asyncio.to_thread(term.expect, "Bye.")
        assert await asyncio.to_thread(term.wait) == 0
    finally:
        await fake.close()
    assert "Traceback" not in term.output and "baton>" not in term.output


def test_warnings_go_to_the_log_file_named_at_start_not_into_the_conversation(terminal: Any, tmp_path: Path) -> None:
    from bot_process import free_port

    # A model endpoint that cannot be reached: every call fails and logs a warning.
    term = terminal(env=playground_env(OPENAI_API_KEY="test-key",
                                       OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1"))
    term.expect("logs: ./baton-playground.log")
    term.expect("you> ")
    term.send("How do I delete a recording?\r")
    term.expect("baton> To delete a recording")  # the offline engine answers
    term.expect("you> ")
    term.send("/quit\r")
    assert term.wait() == 0
    assert '"level"' not in term.output and "llm_call_failed" not in term.output
    log = (tmp_path / "baton-playground.log").read_text()
    assert [json.loads(line)["level"] for line in log.splitlines() if "llm_call_failed" in line][0] == "warning"


# ---- scripted ----


def test_each_run_is_a_new_customer_unless_resumed(tmp_path: Path) -> None:
    example = ["/tz America/Los_Angeles", "The recording of our Weekly Sync is missing", "it was yesterday at 3pm",
               "yes"]
    first = playground(tmp_path, example)
    assert first.returncode == 0, first.stderr
    assert "HANDOFF to support" in first.stdout and "you are a new customer" in first.stdout
    again = playground(tmp_path, example)  # the README's example, a second time in the same folder
    assert again.returncode == 0, again.stderr
    assert "repeat_contact" not in again.stdout
    assert "could you tell me the date of the meeting" in again.stdout

    started = playground(tmp_path, ["The recording of our Board Review is missing"])
    assert "could you tell me" in started.stdout
    resumed = playground(tmp_path, ["it was yesterday at 3pm PST"], "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming the last run's customer and conversation" in resumed.stdout
    assert "baton> Board Review," in resumed.stdout  # the same conversation goes on: its name is read back
    fresh = playground(tmp_path, ["it was yesterday at 3pm PST"])
    assert "Board Review" not in fresh.stdout


def test_staff_replies_show_what_the_customer_reads(tmp_path: Path) -> None:
    result = playground(tmp_path, ["/staff Hello?", "I want to talk to a human",
                                   "/staff Hi, I'm Sam from support. Looking at it now."])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "no conversation yet" in out  # a staff reply before the customer wrote
    assert "\nSupport agent> Hi, I'm Sam from support. Looking at it now.\n" in out
    assert "the conversation is claimed, the bot stays silent" in out
    assert out.rstrip().endswith("Bye. (python -m bot --resume continues this conversation)")
    assert result.stderr == ""


# ---- in process ----


class Failing:
    """A service whose first message fails, as a bug would."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls = 0

    async def handle(self, message: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("boom")
        return await self.real.handle(message)


def test_a_turn_that_fails_is_logged_and_the_conversation_goes_on(tmp_path: Path, bot: Any) -> None:
    from adapters.console import Console
    from bot.service import Service
    from bot.store import Store

    out = io.StringIO()
    with structlog.testing.capture_logs() as logged, asyncio.Runner() as runner:
        store = Store(f"sqlite+aiosqlite:///{tmp_path / 'b.db'}")
        runner.run(store.migrate())
        try:
            console = Console(Failing(Service(bot, store)), io.StringIO("first\nHow do I delete a recording?\n"),
                              out)  # type: ignore[arg-type]
            assert console.run(runner) == 1  # a scripted run with a failed turn exits 1
        finally:
            runner.run(store.close())
    text = out.getvalue()
    assert "could not be handled: the error is in the log" in text and "boom" not in text
    assert "baton> To delete a recording" in text  # the next message is answered
    [failed] = [e for e in logged if e["event"] == "playground_turn_failed"]
    assert failed["log_level"] == "error" and failed["exc_info"] is True
