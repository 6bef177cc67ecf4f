"""Database operations around the store: the schema upgrade, safe for many processes at once, and one
clear line for a database that cannot be used.

:func:`upgrade` brings the schema to the newest Alembic migration (``bot/migrations``). On PostgreSQL it
holds a session-level advisory lock while it works, so N processes started together on an empty database
migrate one after another (the first creates the schema; the others find it at head) instead of racing on
``alembic_version``. SQLite needs no lock: its writers queue on the file.

:func:`explain` turns whatever opening the database raised (a URL that does not parse, a missing or
synchronous driver, an unreachable server, a refused password, a missing database, an SQLite file that
cannot be created) into one line that names ``BATON_DATABASE_URL``, what is wrong and the fix, with the
password masked. Commands print that line instead of a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import re
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.ext.asyncio import AsyncEngine

VARIABLE = "BATON_DATABASE_URL"
MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_LOCK = int.from_bytes(b"baton-db", "big", signed=True)
"""The key of the PostgreSQL advisory lock held during migrations: ``baton-db`` in ASCII, a fixed 64-bit
number (``SELECT pg_advisory_lock(7089063197069845602)`` by hand keeps Baton's processes from migrating)."""

POSTGRES = "postgresql+asyncpg://user:password@host:5432/baton"
SQLITE = "sqlite+aiosqlite:///baton.db"
_INSTALL_POSTGRES = "pip install 'baton[postgres]'"

_log = structlog.get_logger(__name__)
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
"""Alembic announces each of its plugins at INFO when it is first imported: noise on every command's
standard error (between a failing command and its one line), not news of a migration."""

_LOCK = sa.select(sa.func.pg_advisory_lock(sa.literal(MIGRATION_LOCK, sa.BigInteger)))
_TRY_LOCK = sa.select(sa.func.pg_try_advisory_lock(sa.literal(MIGRATION_LOCK, sa.BigInteger)))
_UNLOCK = sa.select(sa.func.pg_advisory_unlock(sa.literal(MIGRATION_LOCK, sa.BigInteger)))


class DatabaseUnavailable(Exception):
    """The configured database cannot be used; ``str()`` is the one line to show (see :func:`explain`)."""

    @classmethod
    def of(cls, url: str, exc: BaseException) -> DatabaseUnavailable:
        return cls(explain(url, exc))


# ---- the schema ----


def _upgrade_to_head(connection: sa.Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection  # bot/migrations/env.py runs on it
    command.upgrade(config, "head")


async def upgrade(engine: AsyncEngine) -> None:
    """Create or upgrade the schema to the newest migration.

    On PostgreSQL, under the session-level advisory lock :data:`MIGRATION_LOCK`, taken and released on
    the connection that migrates: a process that starts while another migrates waits for it, then finds
    the schema at head and has nothing to do. On any failure the connection is discarded, which ends
    its session and with it the lock (a pooled connection must not keep holding it)."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).parent.is_dir():
        # Said before aiosqlite's thread is started: a connection that fails there can still be reporting
        # from that thread while the process exits, which prints a traceback after the one-line error.
        raise sqlite3.OperationalError("unable to open database file")
    async with engine.connect() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            if not (await conn.execute(_TRY_LOCK)).scalar_one():
                _log.info("migration_waiting", reason="another process is migrating this database")
                await conn.execute(_LOCK)
            await conn.commit()  # the lock outlives transactions; the migration gets a fresh one
        try:
            async with conn.begin():
                await conn.run_sync(_upgrade_to_head)
            if postgres:
                await conn.execute(_UNLOCK)
                await conn.commit()
        except BaseException:
            if postgres:
                with contextlib.suppress(Exception):  # the error at hand is the one to report
                    await conn.invalidate()
            raise


# ---- one line for a database that cannot be used ----

_USERINFO = re.compile(r"^(?P<head>[^:/?#@]*://[^:/?#@]*:)(?P<password>[^/?#]*)@")
"""``scheme://user:password@`` at the start of a URL; the password runs up to the last ``@`` before the
path, so a password with an unescaped ``@`` in it is masked whole."""


def shown(url: str) -> str:
    """``url`` as it may be printed: the password masked, whether or not the URL parses."""
    raw = _USERINFO.match(url)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        parsed = None
    if parsed is not None and (raw is None or unquote(raw["password"]) == (parsed.password or "")):
        return parsed.render_as_string(hide_password=True)
    return _USERINFO.sub(r"\g<head>***@", url) if raw is not None else url


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything behind it: causes, contexts, the driver's own exception, group members."""
    seen: list[BaseException] = []
    todo: list[object] = [exc]
    while todo:
        item = todo.pop(0)
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        yield item
        todo += [getattr(item, "orig", None), getattr(item, "driver_exception", None), item.__cause__,
                 item.__context__]
        if isinstance(item, BaseExceptionGroup):
            todo += list(item.exceptions)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _server(url: URL) -> str:
    socket_dir = url.query.get("host")
    if url.host is None and isinstance(socket_dir, str) and socket_dir.startswith("/"):
        return f"the socket in {socket_dir}"
    return f"{url.host or 'localhost'}:{url.port or 5432}"


def _unsupported(url: URL) -> tuple[str, str] | None:
    """The URL's own problems, whatever was raised: a backend Baton does not run on, a synchronous driver."""
    backend, driver = url.get_backend_name(), url.drivername.partition("+")[2] or "its default driver"
    if backend not in ("sqlite", "postgresql"):
        try:
            url.get_dialect()
        except NoSuchModuleError:
            return f"'{url.drivername}' is not a kind of database SQLAlchemy knows", \
                f"use {POSTGRES} or {SQLITE}"
        return f"Baton runs on PostgreSQL or SQLite, not {backend}", f"use {POSTGRES} or {SQLITE}"
    try:
        dialect = url.get_dialect()
        is_async = bool(getattr(dialect.get_async_dialect_cls(url), "is_async", False))  # psycopg has both
    except NoSuchModuleError:
        return f"'{driver}' is not a {backend} driver SQLAlchemy knows", \
            f"use {POSTGRES if backend == 'postgresql' else SQLITE}"
    if not is_async:
        fix = "postgresql+asyncpg://" if backend == "postgresql" else "sqlite+aiosqlite:///"
        return f"the driver {driver} is synchronous and Baton needs an async one", \
            f"start the URL with {fix} instead of {url.drivername}://"
    if backend == "sqlite" and url.database in (None, "", ":memory:"):
        return "an in-memory SQLite database would lose everything when Baton stops", f"name a file, e.g. {SQLITE}"
    return None


def _sqlite_file(url: URL, exc: BaseException) -> tuple[str, str]:
    message = " ".join(_first_line(e).lower() for e in _chain(exc))
    file = Path(url.database or "")
    folder = file.parent
    if "not a database" in message:
        return f"{file} is not an SQLite database", f"point {VARIABLE} to Baton's database file or a new one"
    if "readonly" in message or "read-only" in message:
        return f"{file} is read-only", f"make it writable by this user or point {VARIABLE} to another file"
    if not folder.exists():
        return f"the folder {folder} does not exist", f"create it or point {VARIABLE} to a file in an existing folder"
    if not folder.is_dir():
        return f"{folder} is not a folder", f"point {VARIABLE} to a file in a folder"
    if file.is_dir():
        return f"{file} is a folder", f"point {VARIABLE} to a file"
    return f"{file} cannot be created or opened in {folder}", \
        f"make the folder writable by this user or point {VARIABLE} to another folder"


def _diagnose(url: URL, exc: BaseException) -> tuple[str, str]:
    """(what is wrong, the fix) for ``exc``, raised while opening the database at ``url``."""
    unsupported = _unsupported(url)
    if unsupported is not None:
        return unsupported
    chain = list(_chain(exc))
    postgres = url.get_backend_name() == "postgresql"
    server = _server(url)
    for e in chain:
        if isinstance(e, ImportError):
            missing = getattr(e, "name", None) or _first_line(e)
            if postgres:
                return f"its driver ({missing}) is not installed", f"{_INSTALL_POSTGRES} and use postgresql+asyncpg://"
            return f"its driver ({missing}) is not installed", f"pip install {missing} or use {SQLITE}"
    sqlstate = next((s for e in chain if isinstance(s := getattr(e, "sqlstate", None), str)), None)
    server_says = next((_first_line(e) for e in chain if isinstance(getattr(e, "sqlstate", None), str)), "")
    user, name = url.username or "(none)", url.database or url.username or "postgres"
    if sqlstate in ("28P01", "28000"):
        return f"PostgreSQL at {server} refused user {user}: {server_says}", \
            f"fix the user name and password in {VARIABLE} (or the server's pg_hba.conf)"
    if sqlstate == "3D000":
        return f"the database {name} does not exist on {server}", \
            f"create it (createdb -h {url.host or 'localhost'} -p {url.port or 5432} -U {user} {name}) " \
            f"or fix the name at the end of {VARIABLE}"
    if sqlstate == "42501":
        return f"user {user} may not create Baton's tables in {name}: {server_says}", \
            f"grant it (GRANT CREATE ON SCHEMA public TO {user}) or use the database owner's account"
    if sqlstate is not None and sqlstate[:2] in ("08", "53", "57"):
        return f"PostgreSQL at {server} is not taking connections: {server_says}", "try again once it is up"
    for e in chain:
        if isinstance(e, socket.gaierror):
            return f"the host {url.host} is unknown ({_first_line(e)})", f"fix the host name in {VARIABLE}"
        if isinstance(e, TimeoutError):
            return f"{server} did not answer in time", \
                "check that the host and port are right and that no firewall drops the connection"
        if isinstance(e, ConnectionRefusedError | FileNotFoundError) or (
                isinstance(e, OSError) and e.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH)):
            return f"nothing answers at {server} ({_first_line(e)})", \
                f"start PostgreSQL there or fix the host and port in {VARIABLE}"
    if not postgres and any("unable to open" in _first_line(e) or "readonly" in _first_line(e)
                            or "not a database" in _first_line(e) for e in chain):
        return _sqlite_file(url, exc)
    if postgres and isinstance(exc, OSError) and "Multiple exceptions" in str(exc):  # every address refused
        return f"nothing answers at {server} ({_first_line(exc)})", \
            f"start PostgreSQL there or fix the host and port in {VARIABLE}"
    if not postgres and any("database is locked" in _first_line(e) for e in chain):
        return f"another process holds {url.database} locked", "stop it or try again once it is done"
    if sqlstate is not None:  # connected, then the server refused something of the schema upgrade
        return f"upgrading the schema failed: {server_says} (SQLSTATE {sqlstate})", \
            "run `python -m bot migrate` again, and report it with this line if it persists"
    return f"{type(exc).__name__}: {_first_line(exc)}", f"check {VARIABLE}"


def explain(url: str, exc: BaseException) -> str:
    """One line for ``exc``, raised while opening the database at ``url`` (``BATON_DATABASE_URL``): what
    is wrong and the fix, the password masked. Never more than one line, never a traceback."""
    if isinstance(exc, DatabaseUnavailable):
        return str(exc)
    where = shown(url)
    raw = _USERINFO.match(url)
    try:
        parsed: URL | None = make_url(url)
    except (ArgumentError, ValueError) as bad:
        parsed = None
        problem = "it is empty" if not url.strip() else f"it is not a database URL ({_first_line(bad)})"
        line = f"cannot open the database {VARIABLE}={where!r}: {problem}; set it to e.g. {POSTGRES} or {SQLITE}"
    if parsed is not None and raw is not None and unquote(raw["password"]) != (parsed.password or ""):
        line = f"cannot open the database {VARIABLE}={where}: its password has a character that must be " \
               "percent-encoded in a URL (@ is %40, : is %3A, / is %2F); encode it"
    elif parsed is not None:
        problem, fix = _diagnose(parsed, exc)
        line = f"cannot open the database {VARIABLE}={where}: {problem}; {fix}"
    line = " ".join(line.split())
    for secret in {raw["password"] if raw else "", unquote(raw["password"]) if raw else "",
                   parsed.password if parsed is not None and parsed.password else ""}:
        if len(secret) >= 4:  # a shorter one would mask ordinary words; it is not in these messages anyway
            line = line.replace(secret, "***")
    return line
