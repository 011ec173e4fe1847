"""grpc.health.v1 follows Redis and the database: NOT_SERVING within 5 s of losing one,
SERVING within 5 s of getting it back (Check and Watch)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import grpc
import peewee as pw
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from server.health import HealthMonitor
from tests.harness import RedisServer, Stack, wait_for
from tests.pgcluster import PostgresCluster

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
NAMES = ("", "orders.v1.OrderService")


class Watcher:
    """Collects the statuses a Health.Watch stream sends, in a thread."""

    def __init__(self, channel: grpc.Channel, name: str) -> None:
        self.statuses: list[int] = []
        self.call = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=name)
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for reply in self.call:
                self.statuses.append(reply.status)
        except grpc.RpcError:
            pass  # cancelled at the end of the test

    def stop(self) -> None:
        self.call.cancel()
        self.thread.join(5)


def _all(stack: Stack, status: int) -> bool:
    return all(stack.health(name) == status for name in NAMES)


def test_health_follows_redis(tmp_path: Path, sqlite_url: str) -> None:
    # A private Redis: this test stops it, which the session-wide one must never see.
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    stack = Stack(tmp_path / "stack", redis.url, sqlite_url)
    try:
        stack.start_server()
        wait_for(lambda: _all(stack, SERVING), 10, "SERVING at start")
        watchers = [Watcher(stack.channel, name) for name in NAMES]
        wait_for(lambda: all(w.statuses == [SERVING] for w in watchers), 10, "Watch: SERVING")

        redis.stop()
        lost = time.monotonic()
        wait_for(lambda: _all(stack, NOT_SERVING), 5, "NOT_SERVING within 5 s of losing Redis")
        assert time.monotonic() - lost <= 5.0

        redis.start()
        back = time.monotonic()
        wait_for(lambda: _all(stack, SERVING), 5, "SERVING within 5 s of Redis coming back")
        assert time.monotonic() - back <= 5.0

        expected = [SERVING, NOT_SERVING, SERVING]
        wait_for(lambda: all(w.statuses == expected for w in watchers), 5, "Watch: the changes")
        for watcher in watchers:
            watcher.stop()
        assert "dependency unreachable" in stack.services[0].log_text()
    finally:
        stack.stop()
        redis.stop()


def test_monitor_counts_a_failing_or_hung_database_probe_as_down() -> None:
    """The database side of the monitor, with probes that fail the way peewee does or hang."""

    async def scenario() -> list[int]:
        health = HealthServicer()
        state = {"db": "up"}
        release = threading.Event()

        def database() -> None:
            if state["db"] == "error":
                raise pw.OperationalError("connection refused")
            if state["db"] == "hang":
                release.wait(10)

        monitor = HealthMonitor(
            health, NAMES, {"redis": lambda: None, "database": database}, timeout_s=0.3
        )
        seen = []

        async def check() -> int:
            await monitor.check_once()
            reply = await health.Check(health_pb2.HealthCheckRequest(service=NAMES[1]), None)
            return int(reply.status)

        for mode in ("up", "error", "up", "hang", "hang"):
            state["db"] = mode
            seen.append(await check())
        state["db"] = "up"
        release.set()
        # Once the stuck probe returns, the next check probes again and finds it up.
        deadline = time.monotonic() + 5
        while (status := await check()) != SERVING and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        seen.append(status)
        await monitor.stop()
        return seen

    assert asyncio.run(scenario()) == [
        SERVING,
        NOT_SERVING,
        SERVING,
        NOT_SERVING,  # the probe did not answer within its timeout
        NOT_SERVING,  # still stuck: not probed again, still down
        SERVING,
    ]


def test_health_follows_the_database(make_stack, private_postgres: PostgresCluster) -> None:
    """A private PostgreSQL cluster stopped and started: NOT_SERVING, then SERVING, each
    within 5 s, for both names."""
    stack = make_stack(private_postgres.url)
    stack.start_server()
    serving = health_pb2.HealthCheckResponse.SERVING
    names = ("", "orders.v1.OrderService")
    wait_for(lambda: all(stack.health(n) == serving for n in names), 10, "SERVING at start")
    private_postgres.stop()
    lost = time.monotonic()
    wait_for(
        lambda: all(stack.health(n) == health_pb2.HealthCheckResponse.NOT_SERVING for n in names),
        10,
        "NOT_SERVING after the database went away",
    )
    assert time.monotonic() - lost < 5
    private_postgres.start()
    back = time.monotonic()
    wait_for(
        lambda: all(stack.health(n) == serving for n in names),
        10,
        "SERVING after the database came back",
    )
    assert time.monotonic() - back < 5
