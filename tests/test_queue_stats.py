"""QueueStats: who may call it, and numbers that agree with the database and the lists."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis
from orders.v1 import orders_pb2 as pb

from core.keys import queue_key
from core.models import Order, close_db, init_db
from tests.harness import RedisServer, Stack, free_port, wait_for

ADMIN = "admin-token-for-tests"
ALICE = "alice-token-for-tests"
BUY, SELL = pb.TRANSACTION_TYPE_BUY, pb.TRANSACTION_TYPE_SELL
OK = grpc.StatusCode.OK
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def stats_code(stack: Stack, metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    try:
        stack.stub.QueueStats(pb.QueueStatsRequest(), timeout=10, metadata=metadata)
    except grpc.RpcError as err:
        return err.code()
    return OK


NO_TOKEN: tuple[tuple[str, str], ...] = ()
TABLE = [
    # (server env, metadata sent, expected code)
    ({"ADMIN_TOKEN": ADMIN}, NO_TOKEN, UNAUTHENTICATED),
    ({"ADMIN_TOKEN": ADMIN}, bearer("wrong-token-123"), UNAUTHENTICATED),
    ({"ADMIN_TOKEN": ADMIN}, (("authorization", f"Basic {ADMIN}"),), UNAUTHENTICATED),
    ({"ADMIN_TOKEN": ADMIN}, bearer(ADMIN), OK),
    ({"ADMIN_TOKEN": ADMIN, "API_TOKENS": f"alice:{ALICE}"}, NO_TOKEN, UNAUTHENTICATED),
    (
        {"ADMIN_TOKEN": ADMIN, "API_TOKENS": f"alice:{ALICE}"},
        bearer("nope-nope-1"),
        UNAUTHENTICATED,
    ),
    ({"ADMIN_TOKEN": ADMIN, "API_TOKENS": f"alice:{ALICE}"}, bearer(ALICE), DENIED),
    ({"ADMIN_TOKEN": ADMIN, "API_TOKENS": f"alice:{ALICE}"}, bearer(ADMIN), OK),
    ({}, NO_TOKEN, DENIED),
    ({}, bearer(ADMIN), DENIED),
    ({"API_TOKENS": f"alice:{ALICE}"}, bearer(ALICE), DENIED),
]


def test_queue_stats_auth_table(make_stack, sqlite_url: str) -> None:
    servers: dict[str, Stack] = {}
    for env, metadata, expected in TABLE:
        key = repr(sorted(env.items()))
        if key not in servers:
            servers[key] = make_stack(sqlite_url, **env)
            servers[key].start_server()
        stack = servers[key]
        assert stats_code(stack, metadata) == expected, (env, metadata)
    for stack in servers.values():
        log = "\n".join(s.log_text() for s in stack.services)
        assert ADMIN not in log and ALICE not in log, "a token was logged"
    unconfigured = servers[repr([])]
    log = "\n".join(s.log_text() for s in unconfigured.services)
    assert "set ADMIN_TOKEN" in log


def place(stack: Stack, kind: int) -> str:
    request = pb.PlaceOrderRequest(
        fund_name="Global Equity Fund", transaction_type=kind, quantity=7
    )
    return str(stack.stub.PlaceOrder(request, timeout=10).order_ref_no)


def terminal(stack: Stack, refs: list[str]) -> bool:
    done = (pb.ORDER_STATUS_COMPLETED, pb.ORDER_STATUS_CANCELLED)
    return all(
        stack.stub.GetStatus(pb.GetStatusRequest(order_ref_no=r), timeout=5).order.status in done
        for r in refs
    )


def stats(stack: Stack) -> pb.QueueStatsResponse:
    return stack.stub.QueueStats(pb.QueueStatsRequest(), timeout=10, metadata=bearer(ADMIN))


def db_counts(redis_client: redis.Redis) -> dict[str, object]:
    """The same numbers computed independently from the rows and the lists."""
    lists = {str(p): int(redis_client.llen(queue_key(p))) for p in (1, 2)}
    return {
        "waiting": sum(lists.values()),
        "waiting_by_priority": lists,
        "active": Order.select().where(Order.status == "PROCESSING").count(),
        "completed": Order.select().where(Order.status == "COMPLETED").count(),
        "failed": Order.select().where((Order.status == "CANCELLED") & Order.failed).count(),
    }


def as_dict(reply: pb.QueueStatsResponse) -> dict[str, object]:
    return {
        "waiting": reply.waiting,
        "waiting_by_priority": dict(reply.waiting_by_priority),
        "active": reply.active,
        "completed": reply.completed,
        "failed": reply.failed,
    }


@pytest.fixture
def sqlite_db(sqlite_url: str) -> Iterator[str]:
    """The test process's own connection to the SQLite file the stack uses."""
    init_db(sqlite_url, pool_size=2)
    try:
        yield sqlite_url
    finally:
        close_db()


def test_queue_stats_agree_with_the_database(
    make_stack, sqlite_db: str, redis_client: redis.Redis
) -> None:
    stack = make_stack(sqlite_db, ADMIN_TOKEN=ADMIN)
    stack.start_fundhouse()
    stack.start_server()
    assert as_dict(stats(stack)) == {
        "waiting": 0,
        "waiting_by_priority": {"1": 0, "2": 0},
        "active": 0,
        "completed": 0,
        "failed": 0,
    }
    worker = stack.start_worker()
    completed = [place(stack, BUY if i % 2 else SELL) for i in range(5)]
    wait_for(lambda: terminal(stack, completed), 60, "the first orders to complete")
    stack.fundhouse_behaviour(always_status=400)
    rejected = [place(stack, BUY) for _ in range(3)]
    wait_for(lambda: terminal(stack, rejected), 60, "the rejected orders to be cancelled")
    worker.stop()

    # One order held by a worker that then crashes, and orders left waiting with no worker.
    stack.fundhouse_behaviour(always_status=None, hang_ms=60_000)
    held = place(stack, BUY)
    worker = stack.start_worker(WORKER_CONCURRENCY="1", THIRD_PARTY_TIMEOUT_S="120")
    wait_for(lambda: Order.get(Order.ref == held).status == "PROCESSING", 30, "the claim")
    worker.kill()
    waiting = [place(stack, BUY) for _ in range(2)] + [place(stack, SELL) for _ in range(4)]
    # Cancelled because the queue was unavailable at placement: not a processing failure.
    cut_off = make_stack(sqlite_db)
    cut_off.redis_url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    cut_off.start_server()
    with pytest.raises(grpc.RpcError) as err:
        place(cut_off, SELL)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert Order.select().where(Order.status == "CANCELLED").count() == 4

    reply = as_dict(stats(stack))
    assert reply == db_counts(redis_client)
    assert reply == {
        "waiting": 6,
        "waiting_by_priority": {"1": 2, "2": 4},
        "active": 1,
        "completed": 5,
        "failed": 3,
    }
    assert len(waiting) == 6


def test_queue_stats_redis_down_is_unavailable(make_stack, sqlite_url: str, tmp_path: Path) -> None:
    private = RedisServer(tmp_path / "redis-stats")
    private.start()
    try:
        stack = make_stack(sqlite_url, ADMIN_TOKEN=ADMIN)
        stack.redis_url = private.url
        stack.start_server()
        assert stats(stack).waiting == 0
        private.stop()
        with pytest.raises(grpc.RpcError) as err:
            stats(stack)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "queue unavailable" in err.value.details()
    finally:
        private.stop()
