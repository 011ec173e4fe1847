"""Property tests: random requests and random bytes never get more than the documented codes."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from orders.v1 import orders_pb2 as pb

from core.domain import MAX_QUANTITY
from core.funds import DEMO_FUNDS
from tests.harness import Stack
from tests.orderflow import request

OK = grpc.StatusCode.OK
ALLOWED = {
    OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,  # a key of the small pool reused with another body
}
INT64 = st.integers(-(2**63), 2**63 - 1)
INT32 = st.integers(-(2**31), 2**31 - 1)
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

fund_names = st.one_of(
    st.sampled_from([name for name, _ in DEMO_FUNDS]),
    st.text(max_size=250),  # any code point but surrogates: controls, NUL, RTL marks...
    st.text(st.characters(max_codepoint=31), max_size=5),
    st.just(""),
)
quantities = st.one_of(
    INT64, st.integers(-3, 30), st.sampled_from([MAX_QUANTITY, MAX_QUANTITY + 1, 2**63 - 1])
)
kinds = st.one_of(st.sampled_from([0, 1, 2]), INT32)
keys = st.one_of(st.none(), st.sampled_from(["k1", "k2", "k3", ""]), st.text(max_size=300))


@st.composite
def place_requests(draw: st.DrawFn) -> pb.PlaceOrderRequest:
    req = pb.PlaceOrderRequest(
        fund_name=draw(fund_names), transaction_type=draw(kinds), quantity=draw(quantities)
    )
    key = draw(keys)
    if key is not None:
        req.idempotency_key = key
    return req


def code_of(call: grpc.UnaryUnaryMultiCallable, message: object) -> tuple[grpc.StatusCode, str]:
    try:
        call(message, timeout=10)
    except grpc.RpcError as err:
        return err.code(), err.details() or ""
    return OK, ""


def assert_healthy(stack: Stack) -> None:
    health = health_pb2_grpc.HealthStub(stack.channel)
    reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert stack.stub.PlaceOrder(request(1), timeout=10).order_ref_no.startswith("ORD")
    log = stack.services[-1].log_text()
    assert "Traceback" not in log, log[-3000:]


def test_random_place_requests(make_stack, sqlite_url: str) -> None:
    stack = make_stack(sqlite_url)
    stack.start_server()
    seen: set[grpc.StatusCode] = set()

    @SETTINGS
    @given(req=place_requests())
    def check(req: pb.PlaceOrderRequest) -> None:
        code, details = code_of(stack.stub.PlaceOrder, req)
        seen.add(code)
        assert code in ALLOWED, (code, details, req)

    check()
    assert {OK, grpc.StatusCode.INVALID_ARGUMENT} <= seen, seen
    assert_healthy(stack)


def test_random_bytes_on_every_unary_method(make_stack, sqlite_url: str) -> None:
    stack = make_stack(sqlite_url)
    stack.start_server()
    methods = {
        name: stack.channel.unary_unary(f"/orders.v1.OrderService/{name}")
        for name in ("PlaceOrder", "GetStatus", "ListOrderEvents", "ListFunds")
    }

    @SETTINGS
    @given(method=st.sampled_from(sorted(methods)), payload=st.binary(max_size=512))
    def check(method: str, payload: bytes) -> None:
        code, details = code_of(methods[method], payload)
        assert code in ALLOWED, (method, code, details, payload)

    check()
    assert_healthy(stack)


def test_request_over_the_max_message_size_is_refused_cleanly(make_stack, sqlite_url: str) -> None:
    stack = make_stack(sqlite_url)
    stack.start_server()
    huge = pb.PlaceOrderRequest(
        fund_name="F" * (2 * 1024 * 1024), transaction_type=pb.TRANSACTION_TYPE_BUY, quantity=1
    )
    code, details = code_of(stack.stub.PlaceOrder, huge)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
    assert "larger than max" in details, details
    assert_healthy(stack)
