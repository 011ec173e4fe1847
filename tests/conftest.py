"""Fixtures: a private redis-server, SQLite and PostgreSQL databases, real process stacks."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import peewee as pw
import psycopg2
import pytest
import redis

from core.models import close_db, init_db
from tests.harness import RedisServer, Stack
from tests.pgcluster import PostgresCluster

POSTGRES_ADMIN_URL = os.environ.get(
    "ORDERS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of the tests' own Redis, emptied before the test (no one else uses it)."""
    client = redis_server.client()
    client.flushall()
    yield client
    client.close()


def _postgres_database() -> Iterator[str]:
    name = f"orders_test_{secrets.token_hex(4)}"
    try:
        admin = psycopg2.connect(POSTGRES_ADMIN_URL, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {exc}".strip())
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database of each kind: a SQLite file, or a PostgreSQL database made and dropped."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'orders.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'orders.db'}"


@pytest.fixture
def database(database_url: str) -> Iterator[pw.Database]:
    """The test process's own connection to the database the stack uses."""
    db = init_db(database_url, pool_size=4)
    try:
        yield db
    finally:
        close_db()


@pytest.fixture
def make_stack(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    redis_client: redis.Redis,
    redis_server: RedisServer,
) -> Iterator[type[Stack]]:
    """Build stacks on the given database; every process is stopped after the test."""
    stacks: list[Stack] = []

    def build(database_url: str, **env: str) -> Stack:
        stack = Stack(tmp_path / f"stack{len(stacks)}", redis_server.url, database_url, env)
        stacks.append(stack)
        return stack

    yield build  # type: ignore[misc]
    failed = getattr(request.node, "rep_call", None)
    for stack in stacks:
        if failed is not None and failed.failed:
            print(stack.logs())
        stack.stop()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def private_postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of this test alone (the machine's shared one is never stopped)."""
    try:
        cluster = PostgresCluster()
    except (FileNotFoundError, KeyError) as exc:
        pytest.skip(f"cannot run a private PostgreSQL cluster: {exc}")
    try:
        cluster.init()
        yield cluster
    finally:
        cluster.destroy()
