"""Outages of Redis, the database and the third party, on real processes."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from core.models import Order, close_db, init_db, utcnow
from tests.harness import RedisServer, Stack, wait_for
from tests.orderflow import (  # noqa: F401 - sqlite_db_fixture is a fixture
    Flow,
    assert_one_placement_each,
    events_of,
    place_many,
    request,
    sqlite_db_fixture,
    statuses,
    wait_all_terminal,
)
from tests.pgcluster import PostgresCluster

FAST_REAPER = {"PENDING_GRACE_SECONDS": "2", "REAPER_INTERVAL_S": "0.5"}


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone: it gets stopped, restarted and frozen."""
    server = RedisServer(tmp_path / "private-redis")
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.send_signal(signal.SIGCONT)
        server.stop()


def redis_stack(make_stack, database_url: str, private: RedisServer, **env: str) -> Stack:
    stack = make_stack(database_url, **FAST_REAPER, **env)
    stack.redis_url = private.url
    stack.start_fundhouse()
    stack.start_server()
    stack.start_worker(WORKER_CONCURRENCY="2")
    return stack


def check_flow_outcome(stack: Stack, flow: Flow) -> dict[str, str]:
    """Every answer was OK or a quick UNAVAILABLE; every order ends terminal, placed once."""
    assert flow.failures, "the outage was never seen by a client"
    for code, details, elapsed in flow.failures:
        assert code == grpc.StatusCode.UNAVAILABLE, (code, details)
        assert "queue unavailable" in details, details
        assert elapsed < 2.0, f"UNAVAILABLE took {elapsed:.2f}s"
    final = wait_all_terminal(60, "every order terminal after the outage (none left PENDING)")
    assert_one_placement_each(stack)
    for ref in flow.ok:
        assert final[ref] == "COMPLETED", (ref, events_of(ref))
    for order in Order.select().where(Order.status == "CANCELLED"):
        assert order.failure_reason == "queue unavailable", order.failure_reason
    return final


def test_redis_restarted_empty_while_orders_flow(
    make_stack, database_url: str, database, private_redis: RedisServer
) -> None:
    stack = redis_stack(make_stack, database_url, private_redis)
    stack.fundhouse_behaviour(latency_ms=300)
    backlog = place_many(stack, 20)  # more than the worker does in the outage: a queue is lost
    flow = Flow(stack).start()
    try:
        wait_for(lambda: len(flow.ok) >= 5, 30, "orders to flow")
        private_redis.stop()  # no persistence: it comes back empty
        wait_for(lambda: len(flow.failures) >= 5, 30, "clients to hear UNAVAILABLE")
        for service in stack.services[1:]:
            wait_for(
                lambda s=service: "redis unreachable" in s.log_text(),
                30,
                f"{service.name} to notice",
            )
        private_redis.start()
        resumed = len(flow.ok)
        wait_for(lambda: len(flow.ok) >= resumed + 10, 30, "orders to flow again")
    finally:
        flow.stop()
    final = check_flow_outcome(stack, flow)
    assert all(final[ref] == "COMPLETED" for ref in backlog)
    requeued = [ref for ref in final if "requeued" in events_of(ref)]
    assert requeued, "the queue lost with Redis was never rebuilt by the reaper"
    for service in stack.services[1:]:  # server and worker reconnected without a restart
        assert service.alive()
        wait_for(
            lambda s=service: "redis reachable again" in s.log_text(), 30, f"{service.name} log"
        )


@pytest.mark.usefixtures("sqlite_db")
def test_redis_frozen_then_resumed_while_orders_flow(
    make_stack, sqlite_url: str, private_redis: RedisServer
) -> None:
    stack = redis_stack(make_stack, sqlite_url, private_redis)
    stack.fundhouse_behaviour(latency_ms=100)
    place_many(stack, 10)
    flow = Flow(stack).start()
    assert private_redis.proc is not None
    try:
        wait_for(lambda: len(flow.ok) >= 5, 30, "orders to flow")
        private_redis.proc.send_signal(signal.SIGSTOP)  # hung: connections open, no answers
        wait_for(lambda: len(flow.failures) >= 3, 30, "clients to hear UNAVAILABLE")
        private_redis.proc.send_signal(signal.SIGCONT)
        resumed = len(flow.ok)
        wait_for(lambda: len(flow.ok) >= resumed + 5, 30, "orders to flow again")
    finally:
        flow.stop()
    check_flow_outcome(stack, flow)


@pytest.fixture
def locked_sqlite(sqlite_url: str) -> Iterator[sqlite3.Connection]:
    """A second connection to the stack's SQLite file, ready to hold the write lock."""
    conn = sqlite3.connect(sqlite_url[len("sqlite:///") :], isolation_level=None, timeout=30)
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


def test_database_locked_place_order_is_unavailable_and_writes_nothing(
    make_stack, sqlite_url: str, locked_sqlite: sqlite3.Connection, redis_client
) -> None:
    stack = make_stack(sqlite_url)
    stack.start_server()
    locked_sqlite.execute("BEGIN EXCLUSIVE")
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        stack.stub.PlaceOrder(request(1, key="while-locked"), timeout=30)
    elapsed = time.monotonic() - started
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
    assert err.value.details().startswith("database unavailable: busy"), err.value.details()
    assert "nothing was written" in err.value.details()
    assert "database is locked" not in err.value.details()
    # Bounded by SERVER_DB_LOCK_TIMEOUT_S (3 s), not the workers' 30 s.
    assert elapsed < 10, f"PlaceOrder waited {elapsed:.1f}s on a locked database"
    locked_sqlite.execute("ROLLBACK")
    assert locked_sqlite.execute('SELECT count(*) FROM "order"').fetchone() == (0,)
    assert redis_client.keys("{orders}:queue:*") == []
    # The same key works once the database is back: nothing was bound to it.
    reply = stack.stub.PlaceOrder(request(1, key="while-locked"), timeout=30)
    assert reply.order_ref_no.startswith("ORD")
    assert "database error placing order" in stack.services[-1].log_text()


@pytest.mark.usefixtures("sqlite_db")
def test_worker_keeps_its_lease_and_retries_the_outcome_write(
    make_stack, sqlite_url: str, locked_sqlite: sqlite3.Connection
) -> None:
    lease = 3.0
    stack = make_stack(sqlite_url, ORDER_LEASE_SECONDS=str(lease), REAPER_INTERVAL_S="0.5")
    stack.start_fundhouse()
    stack.start_server()
    worker = stack.start_worker(DB_LOCK_TIMEOUT_S="0.3")
    stack.fundhouse_behaviour(latency_ms=1500)
    ref = stack.stub.PlaceOrder(request(1), timeout=10).order_ref_no
    wait_for(
        lambda: (
            statuses() == {ref: "PROCESSING"}
            and stack.fundhouse_get("/_admin/stats")["requests"] == 1
        ),
        30,
        "the worker to hold the order with its call in flight",
    )
    locked_sqlite.execute("BEGIN EXCLUSIVE")
    wait_for(lambda: "cannot record" in worker.log_text(), 30, "the outcome write to fail")
    wait_for(
        lambda: Order.get(Order.ref == ref).lease_expires_at < utcnow(),
        lease + 10,
        "the lease to expire while the database is locked",
    )
    locked_sqlite.execute("ROLLBACK")
    assert wait_all_terminal(30) == {ref: "COMPLETED"}
    assert "recovered" not in events_of(ref)
    assert stack.fundhouse_get("/_admin/stats")["calls"] == {ref: 1}
    line = next(x for x in worker.log_text().splitlines() if "cannot record" in x)
    assert f"ref={ref}" in line


@pytest.mark.usefixtures("sqlite_db")
def test_third_party_hanging_past_its_timeout_is_retried_then_cancelled(
    make_stack, sqlite_url: str
) -> None:
    stack = make_stack(sqlite_url).start_all(
        THIRD_PARTY_TIMEOUT_S="0.5", THIRD_PARTY_MAX_ATTEMPTS="2"
    )
    stack.fundhouse_behaviour(hang_ms=3000)
    hung = stack.stub.PlaceOrder(request(1), timeout=10).order_ref_no
    assert wait_all_terminal(30) == {hung: "CANCELLED"}
    order = Order.get(Order.ref == hung)
    assert order.attempts == 2 and "timeout" in order.failure_reason, order.failure_reason
    stack.fundhouse_behaviour(hang_ms=0)
    after = stack.stub.PlaceOrder(request(2), timeout=10).order_ref_no
    assert wait_all_terminal(30)[after] == "COMPLETED"  # the worker was never stuck


def test_postgres_restart_unavailable_then_the_outcome_is_recorded(
    make_stack, private_postgres: PostgresCluster
) -> None:
    stack = make_stack(private_postgres.url)
    stack.start_fundhouse()
    stack.start_server()
    worker = stack.start_worker()
    init_db(private_postgres.url)
    try:
        stack.fundhouse_behaviour(latency_ms=2000)
        ref = stack.stub.PlaceOrder(request(1), timeout=10).order_ref_no
        wait_for(
            lambda: (
                statuses() == {ref: "PROCESSING"}
                and stack.fundhouse_get("/_admin/stats")["requests"] == 1
            ),
            30,
            "the worker to hold the order with its call in flight",
        )
        private_postgres.stop()
        with pytest.raises(grpc.RpcError) as err:
            stack.stub.PlaceOrder(request(2, key="during-outage"), timeout=30)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
        assert err.value.details() == (
            "database unavailable: cannot be reached; nothing was written; retry later"
        )
        wait_for(lambda: "cannot record" in worker.log_text(), 30, "the outcome write to fail")
        private_postgres.start()
        assert wait_all_terminal(30) == {ref: "COMPLETED"}  # the failed PlaceOrder left nothing
        assert stack.fundhouse_get("/_admin/stats")["calls"] == {ref: 1}
        # Server and worker reconnect by themselves: the key was never bound, so it places now.
        stack.fundhouse_behaviour(latency_ms=0)
        after = stack.stub.PlaceOrder(request(2, key="during-outage"), timeout=30).order_ref_no
        assert wait_all_terminal(30) == {ref: "COMPLETED", after: "COMPLETED"}
    finally:
        close_db()
