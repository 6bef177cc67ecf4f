"""Shared fixtures: the shipped policy, a network guard, and stores on SQLite and a real PostgreSQL.

PostgreSQL: when its server binaries are installed, the test session starts a throwaway cluster on
a free loopback port and every store test also runs against it. Without them those cases skip,
unless BATON_REQUIRE_POSTGRES=1 (as in CI), where a missing server is a failure.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.engine import Engine
from bot.knowledge import KnowledgeBase
from bot.policy import Policy, load_policy
from bot.store import Store

ROOT = Path(__file__).resolve().parent.parent
SHARED_EVAL = ROOT.parent / "shared" / "eval"


# ---- no network beyond loopback ----

_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: object) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
        host = address[0]
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise RuntimeError(f"test tried to reach the network: {address!r}")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)


# ---- policy and engine ----


@pytest.fixture(scope="session", autouse=True)
def _cache_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Derived files (the prepared embedding model, the help center's sentence vectors) go to a folder
    of this test run, not the user's cache; processes the tests start inherit it."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BATON_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy()


@pytest.fixture(scope="session")
def engine(policy: Policy) -> Engine:
    """The detectors alone (no help center), as ``eval`` scores them."""
    return Engine(policy)


@pytest.fixture(scope="session")
def knowledge(policy: Policy) -> KnowledgeBase:
    return KnowledgeBase.load(None, policy.knowledge)


@pytest.fixture(scope="session")
def bot(policy: Policy, knowledge: KnowledgeBase) -> Engine:
    """The engine as it runs: shipped policy and shipped help center."""
    return Engine(policy, knowledge)


# ---- PostgreSQL ----


def _pg_bindir() -> Path | None:
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if out and (Path(out) / "initdb").exists():
            return Path(out)
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    return versions[0].parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster; yields the URL of its ``postgres`` database."""
    bindir = _pg_bindir()
    if bindir is None:
        if os.environ.get("BATON_REQUIRE_POSTGRES") == "1":
            pytest.fail("BATON_REQUIRE_POSTGRES=1 but no PostgreSQL server binaries were found")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    base = Path(tempfile.mkdtemp(prefix="baton-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(base, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    data = base / "data"
    subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                    "--no-sync"], check=True, capture_output=True)
    started = subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-o",
                              f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                             capture_output=True, text=True, check=False)
    if started.returncode != 0:
        log = (base / "log").read_text() if (base / "log").exists() else ""
        pytest.fail(f"PostgreSQL did not start: {started.stderr}\n{log}")
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


async def _fresh_pg_database(server_url: str) -> str:
    import asyncpg

    name = "t_" + uuid.uuid4().hex[:12]
    dsn = server_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return server_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'baton.db'}"
    else:
        url = await _fresh_pg_database(request.getfixturevalue("postgres_server"))
    s = Store(url)
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def shared_eval() -> Path:
    if not SHARED_EVAL.is_dir():
        pytest.skip("../shared/eval is not present beside this repository")
    return SHARED_EVAL


