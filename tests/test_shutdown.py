"""Graceful shutdown of worker and server, and backpressure on a full queue."""

from __future__ import annotations

import signal
import sqlite3
from collections import Counter

import grpc
import pytest
import redis

from core.models import Order
from tests.harness import wait_for
from tests.orderflow import (  # noqa: F401 - sqlite_db_fixture is a fixture
    assert_one_placement_each,
    events_of,
    place_many,
    queue_entries,
    request,
    sqlite_db_fixture,
    statuses,
    wait_all_terminal,
)


@pytest.mark.usefixtures("sqlite_db")
def test_sigterm_worker_under_load_finishes_or_hands_back_then_exits_0(
    make_stack, sqlite_url: str, redis_client: redis.Redis
) -> None:
    stack = make_stack(sqlite_url)
    stack.start_fundhouse()
    stack.start_server()
    stack.fundhouse_behaviour(latency_ms=300)
    worker = stack.start_worker(WORKER_CONCURRENCY="4")
    refs = place_many(stack, 40)

    def busy() -> bool:
        now = Counter(statuses().values())
        return now["COMPLETED"] >= 4 and now["PROCESSING"] >= 2

    wait_for(busy, 30, "the worker to be busy")
    worker.signal(signal.SIGTERM)
    assert worker.proc.wait(30) == 0, worker.log_text()[-3000:]
    assert "stopping: finishing held orders" in worker.log_text()
    after = statuses()
    assert "PROCESSING" not in after.values(), after  # nothing held by a gone worker
    waiting = Counter(queue_entries(redis_client))
    for ref, status in after.items():
        if status == "PENDING":
            assert waiting[ref] == 1, (ref, events_of(ref))
    assert Counter(after.values())["PENDING"] > 0, "the worker took every ref after SIGTERM"
    stack.start_worker(WORKER_CONCURRENCY="8")
    final = wait_all_terminal(60)
    assert set(final) == set(refs) and set(final.values()) == {"COMPLETED"}
    assert_one_placement_each(stack)
    assert set(stack.fundhouse_get("/_admin/stats")["calls"].values()) == {1}


@pytest.mark.usefixtures("sqlite_db")
def test_sigterm_hands_back_an_order_waiting_to_retry(
    make_stack, sqlite_url: str, redis_client: redis.Redis
) -> None:
    stack = make_stack(sqlite_url, RETRY_BASE_DELAY_S="60", RETRY_MAX_DELAY_S="60")
    stack.start_fundhouse()
    stack.start_server()
    stack.fundhouse_behaviour(always_status=503)
    worker = stack.start_worker(THIRD_PARTY_MAX_ATTEMPTS="3")
    ref = stack.stub.PlaceOrder(request(1), timeout=10).order_ref_no
    wait_for(lambda: "retry_scheduled" in events_of(ref), 30, "a retry to be scheduled")
    worker.signal(signal.SIGTERM)
    assert worker.proc.wait(30) == 0  # the 60 s backoff is cut short by the stop
    assert events_of(ref)[-1] == "released"
    order = Order.get(Order.ref == ref)
    assert (order.status, order.attempts, order.worker_id) == ("PENDING", 1, None)
    assert queue_entries(redis_client) == [ref]
    stack.fundhouse_behaviour(always_status=None)
    stack.start_worker(THIRD_PARTY_MAX_ATTEMPTS="3")
    assert wait_all_terminal(30) == {ref: "COMPLETED"}
    assert Order.get(Order.ref == ref).attempts == 2  # counted across the hand-back


def test_sigterm_server_lets_in_flight_rpc_finish_and_refuses_new_ones(
    make_stack, sqlite_url: str
) -> None:
    stack = make_stack(sqlite_url, LOG_LEVEL="DEBUG", SERVER_DB_LOCK_TIMEOUT_S="30")
    server = stack.start_server(SHUTDOWN_GRACE_S="20")
    # Hold the write lock so that one PlaceOrder stays in flight, waiting for it.
    lock = sqlite3.connect(sqlite_url[len("sqlite:///") :], isolation_level=None, timeout=30)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        in_flight = stack.stub.PlaceOrder.future(request(5), timeout=60)
        wait_for(lambda: "placing order" in server.log_text(), 30, "the RPC to be in flight")
        server.signal(signal.SIGTERM)
        # Not "stopping" (the signal handler's line): a call between it and the gRPC stop
        # is still accepted, and would wait for the lock like the one in flight.
        wait_for(
            lambda: "refusing new calls" in server.log_text(), 30, "the server to stop listening"
        )
        with grpc.insecure_channel(stack.address) as channel:
            fresh = type(stack.stub)(channel)
            with pytest.raises(grpc.RpcError) as err:
                fresh.PlaceOrder(request(6), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert not in_flight.done()
        lock.execute("ROLLBACK")
    finally:
        if lock.in_transaction:
            lock.execute("ROLLBACK")
        lock.close()
    reply = in_flight.result(timeout=30)
    assert reply.order_ref_no.startswith("ORD")
    assert server.proc.wait(30) == 0
    assert "stopped" in server.log_text()


def test_backpressure_past_max_queue_depth(
    make_stack, sqlite_url: str, redis_client: redis.Redis
) -> None:
    stack = make_stack(sqlite_url, MAX_QUEUE_DEPTH="5")
    stack.start_fundhouse()
    stack.start_server()
    first = stack.stub.PlaceOrder(request(1, key="first"), timeout=10)
    for i in range(4):
        stack.stub.PlaceOrder(request(i + 2), timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        stack.stub.PlaceOrder(request(9), timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "queue full: 5 orders waiting (limit 5)" in err.value.details()
    assert len(queue_entries(redis_client)) == 5
    # A retry of an accepted order is still answered: it adds nothing to the queue.
    assert stack.stub.PlaceOrder(request(1, key="first"), timeout=10) == first
    stack.start_worker()
    wait_for(lambda: not queue_entries(redis_client), 30, "the queue to drain")
    assert stack.stub.PlaceOrder(request(9), timeout=10).order_ref_no.startswith("ORD")
