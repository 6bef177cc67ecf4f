"""``python -m bot run`` as a real process: for the tests of the README's run command (:func:`running_bot`)
and for the crash, outage and many-process tests (:class:`Bot`, :func:`start_bots`)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
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


class Bot:
    """``python -m bot run`` as a process that a test may kill at any moment.

    Its log (standard error, one JSON object a line) is read all the time, so a busy process never blocks
    on a full pipe, and a test can wait for a line (:meth:`wait_for_log`) instead of sleeping."""

    def __init__(self, env: dict[str, str], cwd: Path, *, name: str = "bot") -> None:
        self.env = env
        self.cwd = cwd
        self.name = name
        self.lines: list[str] = []
        """Everything it logged, across restarts (a restart logs ``-- restarted --`` between runs)."""
        self.starts = 0
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._logged = asyncio.Condition()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def output(self) -> str:
        return "".join(self.lines)

    async def start(self, ready: str = "slack_http_listening", timeout: float = 60) -> None:
        """Start it (again) and return once it has logged ``ready`` in this run."""
        assert not self.running, f"{self.name} is already running"
        if self.starts:
            self.lines.append("-- restarted --\n")
        self.starts += 1
        mark = len(self.lines)
        self.process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "run", env=self.env,
                                                            cwd=self.cwd, stdin=asyncio.subprocess.DEVNULL,
                                                            stderr=asyncio.subprocess.PIPE, limit=16 * 2**20)
        self._reader = asyncio.create_task(self._read(self.process))
        try:
            await self.wait_for_log(ready, since=mark, timeout=timeout)
        except BaseException:
            await self.kill()
            raise

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        while line := await process.stderr.readline():
            async with self._logged:
                self.lines.append(line.decode(errors="replace"))
                self._logged.notify_all()
        await process.wait()
        async with self._logged:
            self._logged.notify_all()

    async def wait_for_log(self, text: str, *, since: int = 0, timeout: float = 30) -> str:
        """The first line from ``since`` on that contains ``text``; fails if the process ends first."""
        process = self.process

        def found() -> str | None:
            return next((line for line in self.lines[since:] if text in line), None)

        async with self._logged:
            await asyncio.wait_for(self._logged.wait_for(
                lambda: found() is not None or process is None or process.returncode is not None), timeout)
        line = found()
        assert line is not None, f"{self.name} ended before logging {text!r}:\n" + "".join(self.lines[-40:])
        return line

    def count_logs(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    async def kill(self) -> int | None:
        """SIGKILL: no shutdown of any kind, as a crash or the OOM killer; returns the exit code."""
        return await self._end(signal.SIGKILL)

    async def stop(self) -> int | None:
        """SIGTERM, the orderly stop; returns the exit code."""
        return await self._end(signal.SIGTERM)

    async def _end(self, how: signal.Signals) -> int | None:
        process = self.process
        if process is None:
            return None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(how)
        code = await process.wait()
        if self._reader is not None:
            await self._reader  # everything it wrote before it died
            self._reader = None
        return code


async def start_bots(envs: list[dict[str, str]], cwd: Path, *, ready: str = "slack_http_listening",
                     timeout: float = 60, into: list[Bot] | None = None) -> list[Bot]:
    """Start one process per environment at the same moment; every one must come up (else all are killed
    and the first failure raised). ``into``: a list that gets the processes before they start (for cleanup)."""
    bots = [Bot(env, cwd, name=f"bot{n}") for n, env in enumerate(envs)]
    if into is not None:
        into.extend(bots)
    results = await asyncio.gather(*(b.start(ready, timeout) for b in bots), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        await asyncio.gather(*(b.kill() for b in bots))
        raise failed[0]
    return bots
