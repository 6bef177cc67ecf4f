"""Shared fixtures: the shipped policy, a network guard, and stores on SQLite and a real PostgreSQL.

PostgreSQL: when its server binaries are installed, the test session starts a throwaway cluster on
a free loopback port and every store test also runs against it. Without them those cases skip,
unless BATON_REQUIRE_POSTGRES=1 (as in CI), where a missing server is a failure.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pg
import pytest
from discord_fake import FakeDiscord
from slack_fake import FakeSlack, Harness

from bot.engine import Engine
from bot.knowledge import KnowledgeBase
from bot.policy import Policy, load_policy
from bot.service import Service
from bot.store import Store
from bot.testing import TestBot

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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster; yields the URL of its ``postgres`` database."""
    cluster = pg.cluster_or_skip()
    try:
        yield cluster.url
    finally:
        cluster.remove()


_fresh_pg_database = pg.fresh_database


async def _migrated(url: str) -> AsyncIterator[Store]:
    s = Store(url)
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'baton.db'}"
    else:
        url = await _fresh_pg_database(request.getfixturevalue("postgres_server"))
    async for s in _migrated(url):
        yield s


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    """SQLite only, for tests of something other than the database (test_store.py covers both)."""
    async for s in _migrated(f"sqlite+aiosqlite:///{tmp_path / 'baton.db'}"):
        yield s


@pytest.fixture
async def slack(fake: tuple[FakeSlack, str], store: Store, bot: Engine) -> AsyncIterator[Harness]:
    """The real Bolt app over HTTP on the store, against the local Web API fake."""
    server, url = fake
    async with Harness(Service(bot, store), server, url) as harness:
        yield harness


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeSlack, str]]:
    """A local fake of Slack's Web API, and its base URL."""
    server = FakeSlack()
    url = await server.start()
    yield server, url
    await server.close()


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    """A local fake of Discord's gateway and REST API."""
    fake = FakeDiscord()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def baton(store: Store, bot: Engine) -> AsyncIterator[TestBot]:
    """The whole bot on the in-memory platform (bot/testing.py), on the test's store."""
    async with TestBot.create(bot, store) as running:
        yield running


@pytest.fixture
def shared_eval() -> Path:
    if not SHARED_EVAL.is_dir():
        pytest.skip("../shared/eval is not present beside this repository")
    return SHARED_EVAL


