"""``python -m bot run`` as a real process, for the tests of the README's run command."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class BotProcess:
    lines: list[str] = field(default_factory=list)
    output: str = ""
    """Everything it logged; complete once it has stopped."""
    returncode: int | None = None


@contextlib.asynccontextmanager
async def running_bot(env: dict[str, str], cwd: Path, ready: str, timeout: float = 60) -> AsyncIterator[BotProcess]:
    """Start ``python -m bot run`` and wait until it logs ``ready``; on leaving, stop it with SIGTERM
    and collect its exit code and everything it logged."""
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "run", env=env, cwd=cwd,
                                                   stderr=asyncio.subprocess.PIPE)
    bot = BotProcess()
    try:
        assert process.stderr is not None
        while ready not in (line := (await asyncio.wait_for(process.stderr.readline(), timeout)).decode()):
            assert line, "the process ended: " + "".join(bot.lines)
            bot.lines.append(line)
        yield bot
    finally:
        if process.returncode is None:
            process.terminate()
        _, rest = await process.communicate()
        bot.output = "".join(bot.lines) + rest.decode()
        bot.returncode = process.returncode
