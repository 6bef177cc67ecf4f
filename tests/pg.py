"""A throwaway PostgreSQL cluster (for the test session, a benchmark, or a test that stops its own server)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path


def bindir() -> Path | None:
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if out and (Path(out) / "initdb").exists():
            return Path(out)
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    return versions[0].parent if versions else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresUnavailable(RuntimeError):
    pass


@dataclass
class Cluster:
    """``initdb`` in a temporary folder; ``start()``/``stop()`` may be called again (an outage)."""

    bindir: Path
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="baton-pg-")))
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.run_as: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            shutil.chown(self.base, "postgres")
            self.run_as = ["runuser", "-u", "postgres", "--"]
        self.data = self.base / "data"
        subprocess.run([*self.run_as, str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A",
                        "trust", "-E", "UTF8", "--no-sync"], check=True, capture_output=True)

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the ``postgres`` database."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        started = subprocess.run(
            [*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.base / "log"), "-w",
             "-o", f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c max_connections=200", "start"], capture_output=True, text=True, check=False)
        if started.returncode != 0:
            log = (self.base / "log").read_text() if (self.base / "log").exists() else ""
            raise PostgresUnavailable(f"PostgreSQL did not start: {started.stderr}\n{log}")

    def stop(self, mode: str = "immediate") -> None:
        subprocess.run([*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "stop"],
                       check=False, capture_output=True)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def start_cluster() -> Cluster:
    """A started cluster; raises :class:`PostgresUnavailable` when PostgreSQL is not installed."""
    found = bindir()
    if found is None:
        raise PostgresUnavailable("PostgreSQL is not installed (apt-get install postgresql)")
    cluster = Cluster(found)
    cluster.start()
    return cluster


def cluster_or_skip() -> Cluster:
    """A started cluster for a test; the test is skipped when PostgreSQL is not installed, or fails
    when ``BATON_REQUIRE_POSTGRES=1`` (CI) says it must run."""
    import pytest

    try:
        return start_cluster()
    except PostgresUnavailable as exc:
        if os.environ.get("BATON_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"BATON_REQUIRE_POSTGRES=1 but {exc}")
        pytest.skip(str(exc))


async def fresh_database(server_url: str) -> str:
    """A new empty database on the server of ``server_url``; its URL."""
    import asyncpg

    name = "t_" + uuid.uuid4().hex[:12]
    dsn = server_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return server_url.rsplit("/", 1)[0] + "/" + name
