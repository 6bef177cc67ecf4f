"""A customer writing in one Slack Connect thread through the real service, a minute between messages:
the helper the conversation tests share."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from bot.model import Message, Person, Role
from bot.service import Outcome, Service

_ids = itertools.count()


class Customer:
    """``person`` writes in one thread (its own unless ``thread`` is given), starting at ``start``; staff
    replies in the same thread come from Sam Agent. Every outcome is kept."""

    def __init__(self, service: Service, *, start: datetime, person: Person, thread: str | None = None) -> None:
        self.service = service
        self.person = person
        self.thread = thread or f"1700000000.{next(_ids):06d}"
        self.at = start
        self.outcomes: list[Outcome] = []

    async def says(self, text: str, *, role: Role = Role.customer) -> Outcome:
        author = self.person if role is Role.customer else Person(id="U0AGENT", name="Sam Agent", role=role)
        self.at += timedelta(minutes=1)
        outcome = await self.service.handle(Message(
            platform="slack", workspace="T0VENDOR", channel="C0SHARED", thread=self.thread, author=author,
            text=text, at=self.at, event_id=f"Ev{next(_ids)}"))
        self.outcomes.append(outcome)
        return outcome

    def held(self) -> list[str]:
        """The bot's replies that the pre-send guard held, over the whole conversation."""
        return [a.text for o in self.outcomes for a in o.actions if a.kind == "hold"]  # type: ignore[union-attr]
