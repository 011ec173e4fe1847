"""Idempotent PlaceOrder: the same key and body give the same order, once, for good."""

from __future__ import annotations

import datetime as dt
import threading

import grpc
import peewee as pw
import pytest
import redis
from orders.v1 import orders_pb2 as pb

from core import store
from core.models import IdempotencyKey, Order, db
from server.placement import OrderPlacer, Placed, Prepared
from server.validation import validate_place
from tests.harness import Stack, wait_for
from tests.orderflow import (  # noqa: F401 - sqlite_db_fixture is a fixture
    SELL,
    queue_entries,
    request,
    sqlite_db_fixture,
    wait_all_terminal,
)


@pytest.fixture
def server(make_stack, sqlite_url: str, sqlite_db: None) -> Stack:
    stack = make_stack(sqlite_url)
    stack.start_fundhouse()
    stack.start_server()
    return stack


@pytest.fixture
def any_server(make_stack, database_url: str, database) -> Stack:
    """A server on each database kind, for the tests where the kind matters."""
    stack = make_stack(database_url)
    stack.start_fundhouse()
    stack.start_server()
    return stack


def test_same_key_same_body_replays_also_after_completion(
    any_server: Stack, redis_client: redis.Redis
) -> None:
    server = any_server
    first = server.stub.PlaceOrder(request(7, key="client-retry-1"), timeout=10)
    again = server.stub.PlaceOrder(request(7, key="client-retry-1"), timeout=10)
    assert again == first  # same ref, value, status and message: the same response
    assert Order.select().count() == 1
    assert queue_entries(redis_client) == [first.order_ref_no]  # no second queue entry

    server.start_worker()
    assert wait_all_terminal(30) == {first.order_ref_no: "COMPLETED"}
    late = server.stub.PlaceOrder(request(7, key="client-retry-1"), timeout=10)
    assert late == first
    assert Order.select().count() == 1
    assert server.fundhouse_get("/_admin/stats")["placements"] == {first.order_ref_no: 1}
    assert queue_entries(redis_client) == []


@pytest.mark.parametrize(
    "changed", [dict(quantity=8), dict(kind=SELL)], ids=["quantity", "transaction_type"]
)
def test_same_key_other_body_is_already_exists(server: Stack, changed: dict[str, int]) -> None:
    first = server.stub.PlaceOrder(request(7, key="k-1"), timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        server.stub.PlaceOrder(request(**{"quantity": 7, **changed}, key="k-1"), timeout=10)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "idempotency_key" in err.value.details()
    assert "different request" in err.value.details()
    assert [o.ref for o in Order.select()] == [first.order_ref_no]
    # Another fund under the same key is refused as well.
    other = request(7, key="k-1")
    other.fund_name = "Sovereign Bond Fund"
    with pytest.raises(grpc.RpcError) as err:
        server.stub.PlaceOrder(other, timeout=10)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS


def burst(server: Stack, key: str, callers: int = 10) -> list[pb.PlaceOrderResponse]:
    """The same first request from `callers` threads at once, each on its own connection."""
    barrier = threading.Barrier(callers)
    replies: list[pb.PlaceOrderResponse] = []
    errors: list[BaseException] = []

    def call() -> None:
        # A local subchannel pool: grpc otherwise shares one connection among channels.
        channel = grpc.insecure_channel(
            server.address, options=[("grpc.use_local_subchannel_pool", 1)]
        )
        try:
            stub = type(server.stub)(channel)
            barrier.wait(10)
            replies.append(stub.PlaceOrder(request(3, key=key), timeout=15))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            channel.close()

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    return replies


def test_ten_concurrent_first_uses_make_one_order(server: Stack, redis_client: redis.Redis) -> None:
    # Two server processes on the same port (SO_REUSEPORT): the kernel spreads the
    # connections over both, so the key races within a process (one batch dedupes it) and
    # between processes (the replay lookup or the unique index decides).
    second = server.start_server(port=server.server_port)
    # Its health check may have been answered by the first: wait for this one to serve.
    wait_for(lambda: "serving" in second.log_text(), 30, "the second server to serve")
    for round_ in range(3):
        replies = burst(server, f"burst-{round_}")
        assert len(replies) == 10
        assert len({r.order_ref_no for r in replies}) == 1, replies
    assert Order.select().count() == 3
    assert IdempotencyKey.select().count() == 3
    assert len(queue_entries(redis_client)) == 3
    logs = [s.log_text() for s in server.services if s.name == "server"]
    assert all("idempotent replay" in text for text in logs), "both servers were raced"


def test_a_key_taken_between_lookup_and_insert_replays_the_winner(
    server: Stack, redis_client: redis.Redis
) -> None:
    """The unique index is the last guard: a request that found no key, then lost the
    insert to a concurrent one, answers with the winner's order (real database, real Redis)."""
    placer = OrderPlacer(redis.Redis.from_url(server.redis_url), 1000)
    cmd = validate_place("Global Equity Fund", pb.TRANSACTION_TYPE_BUY, 3, "raced")
    with db.connection_context():
        loser = placer.prepare(cmd, "")
        winner = placer.place(cmd, "")  # commits the key first
        assert isinstance(loser, Prepared)
        with pytest.raises(pw.IntegrityError):
            store.create_orders([loser.new])
        assert placer.replay_after_race(loser.new) == Placed(winner.ref, winner.value, True)
    assert Order.select().count() == 1
    assert len(queue_entries(redis_client)) == 1


def test_without_a_key_each_call_is_a_new_order(server: Stack) -> None:
    a = server.stub.PlaceOrder(request(1), timeout=10)
    b = server.stub.PlaceOrder(request(1), timeout=10)
    assert a.order_ref_no != b.order_ref_no
    # Keys are per request body, not global: the empty key is "no key".
    c = server.stub.PlaceOrder(request(1, key=""), timeout=10)
    assert c.order_ref_no not in (a.order_ref_no, b.order_ref_no)
    assert Order.select().count() == 3


def test_keys_are_kept_past_24_hours(server: Stack) -> None:
    first = server.stub.PlaceOrder(request(2, key="old-key"), timeout=10)
    old = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=2)
    IdempotencyKey.update(created_on=old).execute()
    Order.update(created_on=old, enqueued_at=old).execute()
    server.start_worker(REAPER_INTERVAL_S="0.2", PENDING_GRACE_SECONDS="1")
    wait_all_terminal(30)
    assert server.stub.PlaceOrder(request(2, key="old-key"), timeout=10) == first
    assert IdempotencyKey.select().count() == 1
