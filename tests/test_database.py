"""Database operations: migrations under a lock (many processes on one empty PostgreSQL), and one clear
line, from ``python -m bot migrate`` as a real process, for every way the database URL can be wrong."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pg
import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot import database
from bot.database import MIGRATION_LOCK, DatabaseUnavailable, explain, upgrade

HEAD = ScriptDirectory(str(database.MIGRATIONS)).get_current_head()
SECRET = "s3cret-Passw0rd"
TABLES = {"conversations", "messages", "decisions", "transitions", "outbox", "inbox", "alembic_version"}


def _env(url: str, **extra: str) -> dict[str, str]:
    """This environment without Baton's settings (the test cache folder kept), and the URL under test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_") or k == "BATON_CACHE_DIR"}
    return {**env, "BATON_DATABASE_URL": url, **extra}


def _migrate(url: str, cwd: Path, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "bot", "migrate"], cwd=cwd, env=_env(url, **extra), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@dataclass
class Outcome:
    url: str
    code: int
    stdout: str
    stderr: str


def _finish(process: subprocess.Popen[str], url: str) -> Outcome:
    stdout, stderr = process.communicate(timeout=120)
    return Outcome(url, process.returncode, stdout, stderr)


async def _version_and_tables(url: str) -> tuple[list[str], set[str]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            versions = list((await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalars())
            tables = set(await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names()))
    finally:
        await engine.dispose()
    return versions, tables


# ---- the schema, under the lock ----


async def test_upgrade_brings_a_new_sqlite_file_to_head_and_reruns_as_a_no_op(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'baton.db'}"
    engine = create_async_engine(url)
    try:
        await upgrade(engine)
        await upgrade(engine)
    finally:
        await engine.dispose()
    versions, tables = await _version_and_tables(url)
    assert versions == [HEAD] and TABLES <= tables


@pytest.fixture
async def pg_url(postgres_server: str) -> str:
    return await pg.fresh_database(postgres_server)


@pytest.fixture
async def pg_engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(pg_url)
    try:
        yield engine
    finally:
        await engine.dispose()


_ADVISORY = sa.text("SELECT granted FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 "
                    "AND classid::bigint = :high AND objid::bigint = :low")
"""Holders (granted) and waiters of the migration lock: a bigint key is split into two 32-bit halves."""


async def _lock_holders(engine: AsyncEngine) -> list[bool]:
    key = MIGRATION_LOCK & 0xFFFF_FFFF_FFFF_FFFF
    async with engine.connect() as conn:
        rows = await conn.execute(_ADVISORY, {"high": key >> 32, "low": key & 0xFFFF_FFFF})
        return [bool(granted) for granted in rows.scalars()]


@pytest.mark.postgres
async def test_four_engines_upgrading_one_empty_postgres_database_at_once_all_succeed(pg_url: str) -> None:
    engines = [create_async_engine(pg_url, pool_size=1) for _ in range(4)]
    try:
        # Without the lock this does not even fail cleanly: Alembic's module-level proxies mix up the four
        # runs, which then wait on each other's uncommitted tables; the timeout turns that into a failure.
        async with asyncio.timeout(60):
            await asyncio.gather(*(upgrade(engine) for engine in engines))
        assert await _lock_holders(engines[0]) == []  # released by every one of them
    finally:
        await asyncio.gather(*(engine.dispose() for engine in engines))
    versions, tables = await _version_and_tables(pg_url)
    assert versions == [HEAD] and TABLES <= tables


@pytest.mark.postgres
async def test_an_upgrade_waits_while_another_session_holds_the_lock(pg_url: str, pg_engine: AsyncEngine) -> None:
    holder = create_async_engine(pg_url, pool_size=1)
    try:
        async with holder.connect() as conn:
            await conn.execute(sa.select(sa.func.pg_advisory_lock(sa.literal(MIGRATION_LOCK, sa.BigInteger))))
            task = asyncio.create_task(upgrade(pg_engine))
            deadline = time.monotonic() + 30  # the server's lock table is the only signal that it waits
            while sorted(await _lock_holders(pg_engine)) != [False, True]:  # held here, awaited there
                assert time.monotonic() < deadline, "the upgrade never queued for the lock"
                assert not task.done(), "the upgrade ran without waiting for the lock"
                await asyncio.sleep(0.02)
            assert not task.done()
            await conn.execute(sa.select(sa.func.pg_advisory_unlock(sa.literal(MIGRATION_LOCK, sa.BigInteger))))
            await conn.commit()
            await asyncio.wait_for(task, 60)
    finally:
        await holder.dispose()
    assert (await _version_and_tables(pg_url))[0] == [HEAD]


@pytest.mark.postgres
async def test_a_failed_upgrade_releases_the_lock(pg_url: str, pg_engine: AsyncEngine,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(connection: sa.Connection) -> None:
        connection.execute(sa.text("CREATE TABLE half_done (id integer)"))
        raise RuntimeError("a migration failed half way")

    with monkeypatch.context() as patch:
        patch.setattr(database, "_upgrade_to_head", broken)
        with pytest.raises(RuntimeError, match="half way"):
            await upgrade(pg_engine)
    assert await _lock_holders(pg_engine) == []
    await upgrade(pg_engine)  # the same engine (its pool) migrates afterwards
    versions, tables = await _version_and_tables(pg_url)
    assert versions == [HEAD] and "half_done" not in tables  # the failed attempt left nothing behind


class _Gate:
    """A loopback relay to a PostgreSQL server that holds the first ``count`` connections until all of them
    have arrived, then lets them through together: processes that start "at the same moment" then also
    reach the database at the same moment, whatever their start-up times."""

    def __init__(self, host: str, port: int, count: int) -> None:
        self.host, self.port, self.count = host, port, count
        self.arrived = 0
        self.all_here = asyncio.Event()

    async def relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.arrived += 1
        if self.arrived >= self.count:
            self.all_here.set()
        await self.all_here.wait()
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while chunk := await source.read(65536):
                    sink.write(chunk)
                    await sink.drain()
            except ConnectionError:
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.mark.postgres
async def test_four_migrate_processes_started_together_on_one_empty_database_all_succeed(pg_url: str,
                                                                                  tmp_path: Path) -> None:
    target = make_url(pg_url)
    gate = _Gate(target.host or "127.0.0.1", target.port or 5432, count=4)
    server = await asyncio.start_server(gate.relay, "127.0.0.1", 0)
    gated = target.set(port=server.sockets[0].getsockname()[1]).render_as_string(hide_password=False)
    processes = [await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "migrate", cwd=tmp_path,
                                                      env=_env(gated), stdout=subprocess.PIPE,
                                                      stderr=subprocess.PIPE) for _ in range(4)]
    try:
        async with asyncio.timeout(120):
            outputs = [await process.communicate() for process in processes]
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
        server.close()
    assert gate.all_here.is_set()
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr.decode()
        assert b"is up to date" in stdout and b"Traceback" not in stderr
    versions, tables = await _version_and_tables(pg_url)
    assert versions == [HEAD] and TABLES <= tables


# ---- one line for a database that cannot be used, from `python -m bot migrate` ----

# name: (what the line must say, secrets it must not show); each URL carries SECRET as its password where it can
LOCAL_CASES: dict[str, tuple[list[str], list[str]]] = {
    "not a URL": (["is not a database URL", "sqlite+aiosqlite:///"], []),
    "port not a number": (["is not a database URL"], [SECRET]),
    "unknown kind of database": (["'mongodb' is not a kind of database", "postgresql+asyncpg://"], [SECRET]),
    "unsupported database": (["PostgreSQL or SQLite, not mysql"], [SECRET]),
    "synchronous postgres driver": (["psycopg2 is synchronous", "postgresql+asyncpg://"], [SECRET]),
    "synchronous sqlite driver": (["pysqlite is synchronous", "sqlite+aiosqlite:///"], []),
    "driver not installed": (["asyncpg", "is not installed", "pip install 'baton[postgres]'"], [SECRET]),
    "unreachable": (["nothing answers at 127.0.0.1:", "start PostgreSQL there"], [SECRET]),
    "missing folder": (["the folder", "does not exist", "create it"], []),
    "folder is a file": (["is not a folder"], []),
    "unwritable folder": (["cannot be created", "writable"], []),
    "file is not a database": (["is not an SQLite database"], []),
    "in memory": (["in-memory", "name a file"], []),
}


@pytest.fixture(scope="module")
def local_outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every case that needs no server, each its own ``python -m bot migrate``, run side by side."""
    base = tmp_path_factory.mktemp("urls")
    (base / "a-file").write_text("not a folder\n")
    (base / "notes.txt").write_text("not a database either\n" * 50)
    hidden = base / "no-asyncpg" / "asyncpg"  # an install without the postgres extra
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'asyncpg'\", name='asyncpg')\n")
    locked = base / "read-only"
    locked.mkdir()
    locked.chmod(0o555)
    if os.access(locked, os.W_OK):  # root writes anywhere; /proc refuses new files even to root
        locked = Path("/proc")
    port = pg.free_port()  # nothing listens there
    urls: dict[str, tuple[str, dict[str, str]]] = {
        "not a URL": ("not a url", {}),
        "port not a number": (f"postgresql://baton:{SECRET}@127.0.0.1:notaport/baton", {}),
        "unknown kind of database": (f"mongodb://baton:{SECRET}@127.0.0.1/baton", {}),
        "unsupported database": (f"mysql+aiomysql://baton:{SECRET}@127.0.0.1/baton", {}),
        "synchronous postgres driver": (f"postgresql+psycopg2://baton:{SECRET}@127.0.0.1:{port}/baton", {}),
        "synchronous sqlite driver": (f"sqlite+pysqlite:///{base / 'sync.db'}", {}),
        "driver not installed": (f"postgresql://baton:{SECRET}@127.0.0.1:{port}/baton",
                                 {"PYTHONPATH": os.pathsep.join(filter(None, [str(hidden.parent),
                                                                              os.environ.get("PYTHONPATH")]))}),
        "unreachable": (f"postgresql://baton:{SECRET}@127.0.0.1:{port}/baton", {}),
        "missing folder": (f"sqlite+aiosqlite:///{base / 'missing' / 'baton.db'}", {}),
        "folder is a file": (f"sqlite+aiosqlite:///{base / 'a-file' / 'baton.db'}", {}),
        "unwritable folder": (f"sqlite+aiosqlite:///{locked / 'baton.db'}", {}),
        "file is not a database": (f"sqlite+aiosqlite:///{base / 'notes.txt'}", {}),
        "in memory": ("sqlite+aiosqlite://", {}),
    }
    assert urls.keys() == LOCAL_CASES.keys()
    processes = {name: (url, _migrate(url, base, **extra)) for name, (url, extra) in urls.items()}
    outcomes = {name: _finish(process, url) for name, (url, process) in processes.items()}
    assert not (base / "missing").exists()  # nothing was created on the way
    return outcomes


def _assert_one_clear_line(outcome: Outcome, says: list[str], hides: list[str]) -> None:
    assert outcome.code == 2, (outcome.code, outcome.stderr)
    assert "Traceback" not in outcome.stderr and outcome.stdout == ""
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1, outcome.stderr
    line = lines[0]
    assert line.startswith("baton: cannot open the database BATON_DATABASE_URL=")
    for fragment in says:
        assert fragment in line, line
    for secret in hides:
        assert secret not in line, line


@pytest.mark.parametrize("case", LOCAL_CASES)
def test_a_database_url_that_cannot_work_is_one_line_naming_the_variable_and_the_fix(
        local_outcomes: dict[str, Outcome], case: str) -> None:
    says, hides = LOCAL_CASES[case]
    _assert_one_clear_line(local_outcomes[case], says, hides)


@pytest.fixture(scope="module")
def password_server() -> Iterator[str]:
    """A second throwaway cluster that asks for a password over TCP (the shared one trusts everyone);
    its URL with the right password for ``postgres``."""
    cluster = pg.cluster_or_skip()
    try:
        async def set_password() -> None:
            import asyncpg

            conn = await asyncpg.connect(cluster.url.replace("postgresql+asyncpg://", "postgresql://"))
            try:
                await conn.execute("ALTER USER postgres PASSWORD 'right-password'")
            finally:
                await conn.close()

        asyncio.run(set_password())
        (cluster.data / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
        cluster.stop("fast")
        cluster.start()  # waits until it takes connections, under the new rules
        yield cluster.url.replace("postgres@", "postgres:right-password@")
    finally:
        cluster.remove()


SERVER_CASES: dict[str, tuple[list[str], list[str]]] = {
    "wrong password": (["refused user postgres", "password authentication failed", "fix the user name and password"],
                       [SECRET]),
    "unknown user": (['refused user nobody', 'role "nobody" does not exist'], [SECRET]),
    "missing database": (["the database no_such_db does not exist", "createdb", "no_such_db"], [SECRET]),
}


@pytest.fixture(scope="module")
def server_outcomes(postgres_server: str, password_server: str,
                    tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    trusting = postgres_server.rsplit("@", 1)[1].rsplit("/", 1)[0]  # host:port
    urls = {
        "wrong password": password_server.replace("right-password", SECRET),
        "unknown user": f"postgresql://nobody:{SECRET}@{trusting}/postgres",
        "missing database": f"postgresql://postgres:{SECRET}@{trusting}/no_such_db",
    }
    assert urls.keys() == SERVER_CASES.keys()
    cwd = tmp_path_factory.mktemp("servers")
    processes = {name: (url, _migrate(url, cwd)) for name, url in urls.items()}
    return {name: _finish(process, url) for name, (url, process) in processes.items()}


@pytest.mark.postgres
@pytest.mark.parametrize("case", SERVER_CASES)
def test_a_postgres_server_that_refuses_is_one_line_naming_the_variable_and_the_fix(
        server_outcomes: dict[str, Outcome], case: str) -> None:
    says, hides = SERVER_CASES[case]
    _assert_one_clear_line(server_outcomes[case], says, hides)


@pytest.mark.postgres
def test_the_password_server_takes_the_right_password(password_server: str, tmp_path: Path) -> None:
    """The wrong-password case fails on the password, not on the cluster."""
    outcome = _finish(_migrate(password_server, tmp_path), password_server)
    assert outcome.code == 0 and "is up to date" in outcome.stdout and "right-password" not in outcome.stdout


# ---- explain(), for what loopback cannot produce ----

URL = f"postgresql+asyncpg://baton:{SECRET}@db.example:6543/baton"


@pytest.mark.parametrize(("exc", "says"), [
    (socket.gaierror(-2, "Name or service not known"), ["the host db.example is unknown", "fix the host name"]),
    (TimeoutError(), ["db.example:6543 did not answer in time", "firewall"]),
    (OSError("Multiple exceptions: [Errno 111] Connect call failed ('::1', 6543, 0, 0), "
             "[Errno 111] Connect call failed ('127.0.0.1', 6543)"), ["nothing answers at db.example:6543"]),
    (RuntimeError(f"something else\nwith a second line naming {SECRET}"),
     ["RuntimeError: something else", "check BATON_DATABASE_URL"]),
])
def test_explain_is_one_line_with_the_password_masked(exc: BaseException, says: list[str]) -> None:
    line = explain(URL, exc)
    assert "\n" not in line and SECRET not in line
    assert line.startswith("cannot open the database BATON_DATABASE_URL=postgresql+asyncpg://baton:***@db.example")
    for fragment in says:
        assert fragment in line, line


def test_explain_of_an_error_already_explained_keeps_its_line() -> None:
    first = DatabaseUnavailable.of(URL, TimeoutError())
    assert explain(URL, first) == str(first) == explain(URL, TimeoutError())


def test_explain_says_to_percent_encode_an_at_sign_in_the_password() -> None:
    """Such a URL parses with a host name that starts with the rest of the password (so it is not tried
    here as a process: resolving that name could leave the machine)."""
    line = explain("postgresql+asyncpg://baton:p@ss-w0rd@127.0.0.1:5432/baton",
                   socket.gaierror(-2, "Name or service not known"))
    assert "must be percent-encoded" in line and "%40" in line
    assert "p@ss" not in line and "ss-w0rd" not in line and "baton:***@127.0.0.1:5432" in line


def test_explain_masks_the_password_of_a_url_that_does_not_parse() -> None:
    line = explain(f"postgresql+asyncpg://baton:{SECRET}@db:port/x", ValueError("bad port"))
    assert SECRET not in line and "baton:***@db:port" in line and "is not a database URL" in line
