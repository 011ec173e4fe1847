"""Bearer tokens: API_TOKENS close every OrderService RPC; health and reflection stay open."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from orders.v1 import orders_pb2 as pb
from orders.vendor import reflection_v1_pb2 as v1

from tests.harness import Stack

ADMIN = "admin-token-for-tests"
ALICE = "alice-token-for-tests"
BOB = "bob-token-for-tests"
TOKENS = {"ADMIN_TOKEN": ADMIN, "API_TOKENS": f"alice:{ALICE},bob:{BOB}"}
METHODS = pb.DESCRIPTOR.services_by_name["OrderService"].methods
Metadata = tuple[tuple[str, str], ...]


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


def raw_call(stack: Stack, method: str, payload: bytes, metadata: Metadata) -> grpc.StatusCode:
    """Call an OrderService method with raw request bytes; the status code it ends with."""
    path = f"/orders.v1.OrderService/{method}"
    try:
        if pb.DESCRIPTOR.services_by_name["OrderService"].methods_by_name[method].server_streaming:
            call = stack.channel.unary_stream(path)(payload, timeout=10, metadata=metadata)
            for _ in call:
                break  # the first message is enough: the call was let in
            call.cancel()
        else:
            stack.channel.unary_unary(path)(payload, timeout=10, metadata=metadata)
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def place(stack: Stack, metadata: Metadata, key: str | None = None) -> str:
    request = pb.PlaceOrderRequest(
        fund_name="Global Equity Fund", transaction_type=pb.TRANSACTION_TYPE_BUY, quantity=3
    )
    if key is not None:
        request.idempotency_key = key
    return str(stack.stub.PlaceOrder(request, timeout=10, metadata=metadata).order_ref_no)


@pytest.fixture
def secured(make_stack, sqlite_url: str) -> Stack:
    stack: Stack = make_stack(sqlite_url, **TOKENS)
    stack.start_server()
    return stack


def test_every_rpc_needs_a_token(secured: Stack) -> None:
    assert {m.name for m in METHODS} >= {"PlaceOrder", "WatchOrder", "QueueStats", "ListFunds"}
    for method in METHODS:
        for metadata in ((), bearer("not-a-known-token"), (("authorization", ALICE),)):
            code = raw_call(secured, method.name, b"", metadata)
            assert code == grpc.StatusCode.UNAUTHENTICATED, (method.name, metadata, code)


def test_tokens_let_callers_in(secured: Stack) -> None:
    ref = place(secured, bearer(ALICE))
    request = pb.GetStatusRequest(order_ref_no=ref).SerializeToString()
    watch = pb.WatchOrderRequest(order_ref_no=ref).SerializeToString()
    for token in (ALICE, BOB, ADMIN):
        assert raw_call(secured, "ListFunds", b"", bearer(token)) == grpc.StatusCode.OK
        assert raw_call(secured, "GetStatus", request, bearer(token)) == grpc.StatusCode.OK
        assert raw_call(secured, "ListOrderEvents", request, bearer(token)) == grpc.StatusCode.OK
        assert raw_call(secured, "WatchOrder", watch, bearer(token)) == grpc.StatusCode.OK
    assert raw_call(secured, "QueueStats", b"", bearer(ALICE)) == grpc.StatusCode.PERMISSION_DENIED
    assert raw_call(secured, "QueueStats", b"", bearer(ADMIN)) == grpc.StatusCode.OK
    # The scheme is case-insensitive (RFC 7235); the token itself is not.
    lower = (("authorization", f"bearer {BOB}"),)
    assert raw_call(secured, "ListFunds", b"", lower) == grpc.StatusCode.OK
    wrong_case = bearer(BOB.upper())
    assert raw_call(secured, "ListFunds", b"", wrong_case) == grpc.StatusCode.UNAUTHENTICATED
    log = "\n".join(s.log_text() for s in secured.services)
    for token in (ADMIN, ALICE, BOB):
        assert token not in log, "a token was logged"


def test_health_and_reflection_stay_open(secured: Stack) -> None:
    health = health_pb2_grpc.HealthStub(secured.channel)
    for service in ("", "orders.v1.OrderService"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()
    reflect = secured.channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=v1.ServerReflectionRequest.SerializeToString,
        response_deserializer=v1.ServerReflectionResponse.FromString,
    )
    (reply,) = list(reflect(iter([v1.ServerReflectionRequest(list_services="")]), timeout=10))
    assert "orders.v1.OrderService" in {s.name for s in reply.list_services_response.service}


def test_idempotency_keys_are_scoped_per_caller(secured: Stack) -> None:
    alice = place(secured, bearer(ALICE), key="same-key")
    assert place(secured, bearer(ALICE), key="same-key") == alice  # a replay for alice
    bob = place(secured, bearer(BOB), key="same-key")
    admin = place(secured, bearer(ADMIN), key="same-key")
    assert len({alice, bob, admin}) == 3
    assert place(secured, bearer(BOB), key="same-key") == bob


def test_without_client_tokens_calls_are_anonymous(make_stack, sqlite_url: str) -> None:
    stack = make_stack(sqlite_url, ADMIN_TOKEN=ADMIN)
    stack.start_server()
    first = place(stack, (), key="k1")
    assert place(stack, (), key="k1") == first
    assert place(stack, bearer(ADMIN), key="k1") != first  # the admin is a caller of its own
    # A presented token must be valid once any token is configured.
    assert (
        raw_call(stack, "ListFunds", b"", bearer("who-knows-1")) == grpc.StatusCode.UNAUTHENTICATED
    )

    open_stack = make_stack(sqlite_url)
    open_stack.start_server()
    # No token configured at all: tokens are ignored and every caller is the same anonymous one.
    assert place(open_stack, bearer("who-knows-1"), key="k1") == first
