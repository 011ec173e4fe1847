"""Redis unreachable at submit: UNAVAILABLE at once, and the written order is CANCELLED."""

from __future__ import annotations

import time

import grpc
import pytest
from orders.v1 import orders_pb2 as pb

from core.models import Order, OrderEvent
from tests.harness import free_port


def test_place_with_redis_down_is_unavailable_and_cancelled(
    make_stack, database_url: str, database
) -> None:
    stack = make_stack(database_url)
    stack.redis_url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    stack.start_server()
    request = pb.PlaceOrderRequest(
        fund_name="Global Equity Fund",
        transaction_type=pb.TRANSACTION_TYPE_BUY,
        quantity=1,
        idempotency_key="retry-me",
    )
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        stack.stub.PlaceOrder(request, timeout=10)
    elapsed = time.monotonic() - started
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "queue unavailable" in err.value.details()
    assert elapsed < 2.0, f"PlaceOrder took {elapsed:.2f}s with Redis down"
    (order,) = Order.select()
    assert order.status == "CANCELLED" and order.failure_reason == "queue unavailable"
    assert not order.failed  # never processed: not counted as a processing failure
    events = [e.event for e in OrderEvent.select().order_by(OrderEvent.sequence)]
    assert events == ["created", "cancelled"]
    # The key was not bound to an accepted order: a retry is a new attempt, answered the same.
    with pytest.raises(grpc.RpcError) as err:
        stack.stub.PlaceOrder(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert Order.select().count() == 2
