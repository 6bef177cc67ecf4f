"""The local playground: a terminal conversation with the real engine and a real SQLite store.

Type as the customer; Baton answers as it would in a customer channel. Set apart (lines starting with
``│``) is what staff would see: the state, the route, the rules that fired and, on a handoff, the
continuity brief. Needs no tokens and no network.

At a terminal, lines are read with ``input()`` and the standard library's ``readline`` (arrow keys,
history); Ctrl-C and Ctrl-D leave cleanly. Otherwise standard input is read line by line and echoed,
so a script or a test can drive it. The loop reads in the main thread and runs each turn on an
:class:`asyncio.Runner` (nothing runs in the background between turns), so Ctrl-C always reaches
Python and readline restores the terminal itself.

Each run is a new customer (a fresh id), so an earlier run's conversations are not this customer's
history; :meth:`Console.last_session` finds the last run's customer and conversation for ``--resume``.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO

import structlog

from bot.model import AskDetails, Message, Person, Reply, Role
from bot.service import Outcome, Service
from bot.store import Store

PLATFORM = "console"
AGENT = "Support agent"
HELP = """Commands: /new starts a new conversation · /tz ZONE sets your time zone (e.g. /tz Europe/Paris)
          /staff TEXT replies as a member of staff (takes the conversation over) · /help · /quit"""


@dataclass(frozen=True)
class Session:
    """Who the customer is and which conversation they are in."""

    customer_id: str
    thread: str
    timezone: str | None = None

    @classmethod
    def new(cls, timezone: str | None = None) -> Session:
        return cls(customer_id=f"local-{uuid.uuid4().hex[:8]}", thread=_new_thread(), timezone=timezone)


def _new_thread() -> str:
    return f"local-{uuid.uuid4().hex[:8]}"


class Console:
    """A connector that only translates: terminal lines in, :class:`Message` to the service, text out."""

    def __init__(self, service: Service, stdin: IO[str], stdout: IO[str], *, customer: str = "You",
                 timezone: str | None = None, session: Session | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.service = service
        self.stdin = stdin
        self.stdout = stdout
        self.customer = customer
        session = session or Session.new()
        self.customer_id = session.customer_id
        self.thread = session.thread
        self.timezone = timezone or session.timezone
        self.clock = clock or (lambda: datetime.now(UTC))
        self.failures = 0
        """Turns that raised (logged, the conversation goes on); a scripted run then exits 1."""
        self.interactive = stdin is sys.stdin and stdin.isatty()
        if self.interactive:
            import readline  # noqa: F401 - importing it gives input() line editing and history

    @staticmethod
    async def last_session(store: Store) -> Session | None:
        """The customer and conversation of the playground's most recent turn, for ``--resume``."""
        conversations = await store.recent_conversations(PLATFORM, since=datetime(1970, 1, 1, tzinfo=UTC))
        if not conversations:
            return None
        last = conversations[-1]  # oldest first, by last activity
        return Session(customer_id=last.customer.id, thread=last.thread, timezone=last.customer.timezone)

    # ---- output ----

    def say(self, text: str = "") -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def staff(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            self.say(f"  │ {line}")

    # ---- the loop ----

    def run(self, runner: asyncio.Runner, *, intro: Sequence[str] = ()) -> int:
        """Read lines until /quit, the end of input, Ctrl-D or Ctrl-C; each turn runs on ``runner``.
        Returns 0, or 1 when a turn failed (its traceback is in the log)."""
        self.say("Baton playground: you are the customer. The lines starting with │ are what staff would see.")
        for note in intro:
            self.say(note)
        self.say(HELP)
        try:
            while (line := self.read()) is not None:
                if not runner.run(self.handle_line(line)):
                    break
            else:
                self.say()  # end of input leaves the cursor after the prompt
        except KeyboardInterrupt:
            self.say()
        self.say("Bye. (python -m bot --resume continues this conversation)")
        return 1 if self.failures else 0

    def read(self) -> str | None:
        """One line without its end; ``None`` at the end of input. Ctrl-C raises KeyboardInterrupt."""
        if self.interactive:
            try:
                return input("you> ")
            except EOFError:  # Ctrl-D
                return None
        self.stdout.write("you> ")
        self.stdout.flush()
        line = self.stdin.readline()
        if not line:
            return None
        line = line.rstrip("\r\n")
        self.say(line.strip())  # echo scripted input, so the transcript reads like a conversation
        return line

    async def handle_line(self, line: str) -> bool:
        """Act on one line; ``False`` when it asks to leave."""
        text = line.strip()
        if not text:
            return True
        if text in ("/quit", "/exit"):
            return False
        if text == "/help":
            self.say(HELP)
        elif text == "/new":
            self.thread = _new_thread()
            self.say("(a new conversation)")
        elif text.startswith("/tz"):
            self._set_zone(text[3:].strip())
        elif text.startswith("/staff"):
            await self.send(text[6:].strip(), role=Role.staff)
        elif text.startswith("/"):
            self.say(f"unknown command {text.split()[0]}; /help lists them")
        else:
            await self.send(text, role=Role.customer)
        return True

    def _set_zone(self, name: str) -> None:
        from bot.policy import zone

        try:
            zone(name)
        except ValueError as exc:
            self.say(str(exc))
            return
        self.timezone = name
        self.say(f"(your time zone is now {name})")

    async def send(self, text: str, *, role: Role) -> Outcome | None:
        if not text:
            self.say("(nothing to send)")
            return None
        customer = role is Role.customer
        author = Person(id=self.customer_id if customer else "agent", name=self.customer if customer else AGENT,
                        role=role, organisation="local", timezone=self.timezone if customer else None)
        message = Message(platform=PLATFORM, workspace="local", channel="playground", thread=self.thread,
                          author=author, text=text, at=self.clock(), event_id=uuid.uuid4().hex)
        try:
            outcome = await self.service.handle(message)
        except Exception:
            self.failures += 1
            # A logger looked up now, not at import: the log file is configured by then (loggers are
            # fixed at their first use).
            structlog.get_logger(__name__).exception("playground_turn_failed", thread=self.thread)
            self.staff("this message could not be handled: the error is in the log")
            return None
        self.show(outcome, role, text)
        return outcome

    def show(self, outcome: Outcome, role: Role, text: str) -> None:
        if role is Role.staff:
            if outcome.conversation is None:
                self.staff("no conversation yet: write as the customer first, then reply as staff")
                return
            self.say(f"{AGENT}> {text}")  # what the customer reads in their thread, under the agent's name
            self.staff("staff replied in the customer's thread: the conversation is claimed, the bot stays silent")
            return
        for action in outcome.actions:
            if isinstance(action, Reply | AskDetails):
                self.say(f"baton> {action.text}")
        decision = outcome.decision
        if decision is None:
            return
        state = outcome.state.value if outcome.state is not None else "-"
        signals = ", ".join(f"{s.kind}:{s.severity}" for s in decision.signals) or "none"
        self.staff(f"state {state} · intent {decision.intent} ({decision.confidence:.2f}) · severity "
                   f"{decision.severity} · route {decision.route or '-'} · signals {signals}")
        self.staff("rules: " + (", ".join(decision.rules) or "-"))
        for action in outcome.actions:
            if action.kind == "hold":
                self.staff(f"HELD by the pre-send guard: {action.text!r}: {'; '.join(action.problems)}")
            elif action.kind == "mirror":
                self.staff(f"mirrored to the internal thread: {action.text}")
        if outcome.brief is not None:
            self.staff("")
            self.staff(outcome.brief.text())
