"""The order path end to end, through real server, worker and fundhouse processes."""

from __future__ import annotations

from decimal import Decimal

import grpc
import pytest
from orders.v1 import orders_pb2 as pb

from core.models import Order, OrderEvent
from tests.harness import Stack, wait_for

BUY, SELL = pb.TRANSACTION_TYPE_BUY, pb.TRANSACTION_TYPE_SELL


def place(
    stack: Stack, fund: str = "Global Equity Fund", kind: int = BUY, quantity: int = 100
) -> pb.PlaceOrderResponse:
    return stack.stub.PlaceOrder(
        pb.PlaceOrderRequest(fund_name=fund, transaction_type=kind, quantity=quantity), timeout=10
    )


def wait_terminal(stack: Stack, ref: str, timeout: float = 30) -> pb.Order:
    def done() -> pb.Order | None:
        order = stack.stub.GetStatus(pb.GetStatusRequest(order_ref_no=ref), timeout=5).order
        terminal = (pb.ORDER_STATUS_COMPLETED, pb.ORDER_STATUS_CANCELLED)
        return order if order.status in terminal else None

    return wait_for(done, timeout, f"order {ref} to be terminal")


def test_place_completes(make_stack, database_url: str, database) -> None:
    stack = make_stack(database_url).start_all()
    reply = place(stack, quantity=100)
    assert reply.status == pb.ORDER_STATUS_PENDING
    assert reply.message == "Order has been queued for processing"
    assert reply.order_value == "1000.00"
    assert reply.order_ref_no.startswith("ORD") and len(reply.order_ref_no) >= 13

    order = wait_terminal(stack, reply.order_ref_no)
    assert order.status == pb.ORDER_STATUS_COMPLETED, order
    assert order.attempts == 1
    assert order.confirmation_id.startswith("FH")
    assert order.failure_reason == ""
    assert order.fund_name == "Global Equity Fund"
    assert (
        order.created_on.seconds > 0
        and order.updated_on.ToDatetime() >= order.created_on.ToDatetime()
    )
    stats = stack.fundhouse_get("/_admin/stats")
    assert stats["placements"] == {reply.order_ref_no: 1}
    assert stats["calls"] == {reply.order_ref_no: 1}

    events = stack.stub.ListOrderEvents(
        pb.ListOrderEventsRequest(order_ref_no=reply.order_ref_no), timeout=5
    ).events
    assert [e.event for e in events] == ["created", "queued", "claimed", "attempt", "completed"]
    assert [e.sequence for e in events] == [1, 2, 3, 4, 5]
    assert [e.progress for e in events] == sorted(e.progress for e in events)
    assert events[-1].progress == 100
    assert events[0].order.status == pb.ORDER_STATUS_PENDING  # history, not today's state
    row = Order.get(Order.ref == reply.order_ref_no)
    assert row.order_value == Decimal("1000.00")
    assert OrderEvent.select().where(OrderEvent.order == row).count() == 5


def test_order_value_is_exact_decimal(make_stack, sqlite_url: str) -> None:
    stack = make_stack(sqlite_url)
    stack.start_server()
    # 23.4567 x 3 = 70.3701 -> 70.37; x 5 = 117.2835 -> 117.28 (half-up at the third place: 5)
    assert place(stack, "Emerging Markets Fund", quantity=3).order_value == "70.37"
    assert place(stack, "Emerging Markets Fund", quantity=5).order_value == "117.28"
    assert place(stack, "Emerging Markets Fund", quantity=10_000_000).order_value == "234567000.00"
    funds = stack.stub.ListFunds(pb.ListFundsRequest(), timeout=5).funds
    assert ("Emerging Markets Fund", "23.4567") in [(f.name, f.nav) for f in funds]


def test_buy_orders_reach_third_party_before_sell(make_stack, database_url: str) -> None:
    stack = make_stack(database_url)
    stack.start_fundhouse()
    stack.start_server()
    sells = [place(stack, kind=SELL, quantity=i + 1).order_ref_no for i in range(5)]
    buys = [place(stack, kind=BUY, quantity=i + 1).order_ref_no for i in range(5)]
    stack.start_worker(WORKER_CONCURRENCY="1")
    for ref in sells + buys:
        assert wait_terminal(stack, ref).status == pb.ORDER_STATUS_COMPLETED
    arrivals = stack.fundhouse_get("/_admin/stats")["arrivals"]
    kinds = [a["transactionType"] for a in arrivals]
    assert kinds == ["BUY"] * 5 + ["SELL"] * 5, arrivals
    # Within one priority, first in first out.
    assert [a["key"] for a in arrivals] == buys + sells


def test_retryable_failures_then_success_counts_attempts(make_stack, database_url: str) -> None:
    stack = make_stack(database_url).start_all(THIRD_PARTY_MAX_ATTEMPTS="5")
    stack.fundhouse_behaviour(fail_first=2, fail_first_status=503)
    ref = place(stack).order_ref_no
    order = wait_terminal(stack, ref)
    assert order.status == pb.ORDER_STATUS_COMPLETED, order
    assert order.attempts == 3
    assert stack.fundhouse_get("/_admin/stats")["calls"][ref] == 3
    events = [
        e.event
        for e in stack.stub.ListOrderEvents(
            pb.ListOrderEventsRequest(order_ref_no=ref), timeout=5
        ).events
    ]
    assert events == [
        "created",
        "queued",
        "claimed",
        "attempt",
        "retry_scheduled",
        "attempt",
        "retry_scheduled",
        "attempt",
        "completed",
    ]


@pytest.mark.parametrize("status", [429, 409, 408, 500, 503])
def test_retryable_statuses_exhaust_attempts_then_cancel(
    make_stack, sqlite_url: str, status: int
) -> None:
    stack = make_stack(sqlite_url).start_all(THIRD_PARTY_MAX_ATTEMPTS="3")
    stack.fundhouse_behaviour(always_status=status)
    ref = place(stack).order_ref_no
    order = wait_terminal(stack, ref)
    assert order.status == pb.ORDER_STATUS_CANCELLED
    assert order.attempts == 3
    assert f"HTTP {status}" in order.failure_reason
    assert stack.fundhouse_get("/_admin/stats")["calls"][ref] == 3


@pytest.mark.parametrize("status", [400, 404, 422])
def test_final_4xx_cancels_after_exactly_one_call(
    make_stack, database_url: str, status: int
) -> None:
    stack = make_stack(database_url).start_all()
    stack.fundhouse_behaviour(always_status=status)
    ref = place(stack).order_ref_no
    order = wait_terminal(stack, ref)
    assert order.status == pb.ORDER_STATUS_CANCELLED
    assert order.attempts == 1
    assert f"HTTP {status}" in order.failure_reason
    assert stack.fundhouse_get("/_admin/stats")["calls"][ref] == 1


def test_third_party_down_retries_then_cancels(make_stack, sqlite_url: str) -> None:
    stack = make_stack(sqlite_url)
    stack.start_server()
    stack.fundhouse_port = 9  # discard port: nothing listens, connections are refused
    stack.start_worker(THIRD_PARTY_MAX_ATTEMPTS="2")
    order = wait_terminal(stack, place(stack).order_ref_no)
    assert order.status == pb.ORDER_STATUS_CANCELLED
    assert order.attempts == 2
    assert "connection error" in order.failure_reason


def test_concurrent_get_status_calls_each_get_their_own_order(
    make_stack, database_url: str
) -> None:
    """GetStatus calls in flight together share one read (server/batching.Batcher): each
    still gets its own order, the same ref twice gets it twice, an unknown ref NOT_FOUND."""
    stack = make_stack(database_url)
    stack.start_server()
    placed = [place(stack, quantity=q) for q in range(1, 41)]
    refs = [p.order_ref_no for p in placed] + [placed[0].order_ref_no, "ORD0000000000"]
    futures = [
        stack.stub.GetStatus.future(pb.GetStatusRequest(order_ref_no=ref), timeout=10)
        for ref in refs
    ]
    for quantity, (p, future) in enumerate(zip(placed, futures, strict=False), start=1):
        order = future.result().order
        assert (order.order_ref_no, order.quantity) == (p.order_ref_no, quantity)
        assert order.status == pb.ORDER_STATUS_PENDING
    assert futures[40].result().order.order_ref_no == placed[0].order_ref_no
    with pytest.raises(grpc.RpcError) as err:
        futures[41].result()
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "ORD0000000000" in err.value.details()


def test_get_status_unknown_ref_is_not_found(make_stack, sqlite_url: str) -> None:
    stack = make_stack(sqlite_url)
    stack.start_server()
    with pytest.raises(grpc.RpcError) as err:
        stack.stub.GetStatus(pb.GetStatusRequest(order_ref_no="ORD0000000000"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "order_ref_no" in err.value.details()
