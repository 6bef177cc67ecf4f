"""The local playground: a terminal conversation with the real engine and a real SQLite store.

Type as the customer; Baton answers as it would in a customer channel. Set apart (lines starting with
``│``) is what staff would see: the state, the route, the rules that fired and, on a handoff, the
continuity brief. Needs no tokens and no network. Reads standard input line by line, so it can be
driven by a script or a test as well as by a person.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO

from bot.model import AskDetails, Message, Person, Reply, Role
from bot.service import Outcome, Service

HELP = """Commands: /new starts a new conversation · /tz ZONE sets your time zone (e.g. /tz Europe/Paris)
          /staff TEXT replies as a member of staff (takes the conversation over) · /help · /quit"""


class Console:
    """A connector that only translates: terminal lines in, :class:`Message` to the service, text out."""

    def __init__(self, service: Service, stdin: IO[str], stdout: IO[str], *, customer: str = "You",
                 timezone: str | None = None, clock: Callable[[], datetime] | None = None) -> None:
        self.service = service
        self.stdin = stdin
        self.stdout = stdout
        self.customer = customer
        self.timezone = timezone
        self.clock = clock or (lambda: datetime.now(UTC))
        self.thread = self._new_thread()

    @staticmethod
    def _new_thread() -> str:
        return f"local-{uuid.uuid4().hex[:8]}"

    def say(self, text: str = "") -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def staff(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            self.say(f"  │ {line}")

    async def run(self) -> int:
        self.say("Baton playground: you are the customer. The lines starting with │ are what staff would see.")
        self.say(HELP)
        while True:
            self.stdout.write("you> ")
            self.stdout.flush()
            line = await asyncio.to_thread(self.stdin.readline)
            if not line:  # end of input
                self.say()
                return 0
            text = line.strip()
            if not self.stdin.isatty():
                self.say(text)  # echo scripted input, so the transcript reads like a conversation
            if not text:
                continue
            if text in ("/quit", "/exit"):
                return 0
            if text == "/help":
                self.say(HELP)
            elif text == "/new":
                self.thread = self._new_thread()
                self.say("(a new conversation)")
            elif text.startswith("/tz"):
                self._set_zone(text[3:].strip())
            elif text.startswith("/staff"):
                await self.send(text[6:].strip(), role=Role.staff)
            elif text.startswith("/"):
                self.say(f"unknown command {text.split()[0]}; /help lists them")
            else:
                await self.send(text, role=Role.customer)

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
        author = Person(id="customer" if role is Role.customer else "agent",
                        name=self.customer if role is Role.customer else "Support agent",
                        role=role, organisation="local", timezone=self.timezone if role is Role.customer else None)
        message = Message(platform="console", workspace="local", channel="playground", thread=self.thread,
                          author=author, text=text, at=self.clock(), event_id=uuid.uuid4().hex)
        outcome = await self.service.handle(message)
        self.show(outcome, role)
        return outcome

    def show(self, outcome: Outcome, role: Role) -> None:
        for action in outcome.actions:
            if isinstance(action, Reply | AskDetails):
                self.say(f"baton> {action.text}")
        decision = outcome.decision
        if role is Role.staff:
            self.staff("staff replied in the thread: the conversation is claimed, the bot stays silent")
            return
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
