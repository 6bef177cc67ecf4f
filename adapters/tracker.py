"""What an adapter has finished working on: adapters acknowledge first and work after, so tests await
this instead of sleeping. It also counts what was handled."""

from __future__ import annotations

import asyncio
from collections import OrderedDict


class Tracker:
    """Which requests the adapter has finished working on (Bolt acknowledges first and works after).

    Tests await it instead of sleeping; it also counts what was handled."""

    def __init__(self) -> None:
        self._done: OrderedDict[str, None] = OrderedDict()
        self._changed = asyncio.Condition()
        self.handled = 0

    async def done(self, key: str | None) -> None:
        async with self._changed:
            self.handled += 1
            if key:
                self._done[key] = None
                while len(self._done) > 10_000:
                    self._done.popitem(last=False)
            self._changed.notify_all()

    async def wait(self, key: str, timeout: float = 10.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: key in self._done), timeout)

    async def wait_count(self, count: int, timeout: float = 10.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.handled >= count), timeout)
