"""Malformed requests get INVALID_ARGUMENT or NOT_FOUND naming the field, and write nothing."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from orders.v1 import orders_pb2 as pb

from core.models import Order, OrderEvent
from tests.harness import Stack

BUY = pb.TRANSACTION_TYPE_BUY
FUND = "Global Equity Fund"
INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND

CASES = [
    ("zero quantity", dict(fund_name=FUND, transaction_type=BUY, quantity=0), INVALID, "quantity"),
    (
        "negative quantity",
        dict(fund_name=FUND, transaction_type=BUY, quantity=-5),
        INVALID,
        "quantity",
    ),
    (
        "absurd quantity",
        dict(fund_name=FUND, transaction_type=BUY, quantity=2**62),
        INVALID,
        "quantity",
    ),
    (
        "just over the limit",
        dict(fund_name=FUND, transaction_type=BUY, quantity=10_000_001),
        INVALID,
        "quantity",
    ),
    ("empty fund", dict(fund_name="", transaction_type=BUY, quantity=1), INVALID, "fund_name"),
    (
        "100 KB fund name",
        dict(fund_name="F" * 100_000, transaction_type=BUY, quantity=1),
        INVALID,
        "fund_name",
    ),
    (
        "201 character fund name",
        dict(fund_name="F" * 201, transaction_type=BUY, quantity=1),
        INVALID,
        "fund_name",
    ),
    (
        "control character",
        dict(fund_name="Global\x00Equity", transaction_type=BUY, quantity=1),
        INVALID,
        "fund_name",
    ),
    (
        "newline",
        dict(fund_name="Global\nEquity", transaction_type=BUY, quantity=1),
        INVALID,
        "fund_name",
    ),
    (
        "unknown fund",
        dict(fund_name="No Such Fund", transaction_type=BUY, quantity=1),
        NOT_FOUND,
        "fund_name",
    ),
    (
        "unspecified type",
        dict(fund_name=FUND, transaction_type=0, quantity=1),
        INVALID,
        "transaction_type",
    ),
    (
        "unknown enum value",
        dict(fund_name=FUND, transaction_type=7, quantity=1),
        INVALID,
        "transaction_type",
    ),
    (
        "negative enum value",
        dict(fund_name=FUND, transaction_type=-1, quantity=1),
        INVALID,
        "transaction_type",
    ),
    (
        "idempotency key too long",
        dict(fund_name=FUND, transaction_type=BUY, quantity=1, idempotency_key="k" * 256),
        INVALID,
        "idempotency_key",
    ),
    (
        "idempotency key not ASCII",
        dict(fund_name=FUND, transaction_type=BUY, quantity=1, idempotency_key="clé"),
        INVALID,
        "idempotency_key",
    ),
    (
        "idempotency key with control",
        dict(fund_name=FUND, transaction_type=BUY, quantity=1, idempotency_key="a\tb"),
        INVALID,
        "idempotency_key",
    ),
]


@pytest.fixture
def server_only(make_stack, database_url: str, database) -> Stack:
    stack = make_stack(database_url)
    stack.start_server()
    return stack


def test_bad_place_requests(server_only: Stack, redis_client) -> None:
    for name, fields, code, field in CASES:
        with pytest.raises(grpc.RpcError) as err:
            server_only.stub.PlaceOrder(pb.PlaceOrderRequest(**fields), timeout=5)
        assert err.value.code() == code, name
        assert field in err.value.details(), (name, err.value.details())
        if code == INVALID:
            status = rpc_status.from_call(err.value)
            assert status is not None, name
            bad = error_details_pb2.BadRequest()
            assert status.details[0].Unpack(bad), name
            assert bad.field_violations[0].field == field, name
    assert Order.select().count() == 0
    assert OrderEvent.select().count() == 0
    assert redis_client.keys("*") == []


@pytest.mark.parametrize(
    "ref", ["", "ord123", "ORD123", "ORD" + "a" * 12, "ORD" + "A" * 200, "ORD\x00AAAAAAAAAA"]
)
def test_malformed_refs(make_stack, sqlite_url: str, ref: str) -> None:
    stack = make_stack(sqlite_url)
    stack.start_server()
    for call, request in (
        (stack.stub.GetStatus, pb.GetStatusRequest(order_ref_no=ref)),
        (stack.stub.ListOrderEvents, pb.ListOrderEventsRequest(order_ref_no=ref)),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call(request, timeout=5)
        assert err.value.code() == INVALID
        assert "order_ref_no" in err.value.details()


@pytest.mark.parametrize(
    "payload", [b"\xff\xff\xff\xff", b"\x0a\xff\x01", b"\x0a\x05ab", bytes(range(256))]
)
def test_bytes_that_are_not_protobuf(make_stack, sqlite_url: str, payload: bytes) -> None:
    stack = make_stack(sqlite_url)
    # QueueStats is admin only, and authentication comes before decoding: send the token.
    stack.start_server(ADMIN_TOKEN="bad-input-admin")
    admin = (("authorization", "Bearer bad-input-admin"),)
    for method in ("PlaceOrder", "GetStatus", "ListFunds", "QueueStats", "ListOrderEvents"):
        call = stack.channel.unary_unary(f"/orders.v1.OrderService/{method}")
        with pytest.raises(grpc.RpcError) as err:
            call(payload, timeout=5, metadata=admin)
        assert err.value.code() == INVALID, (method, err.value.details())
        assert "request" in err.value.details()
    stream = stack.channel.unary_stream("/orders.v1.OrderService/WatchOrder")
    with pytest.raises(grpc.RpcError) as err:
        list(stream(payload, timeout=5))
    assert err.value.code() == INVALID
