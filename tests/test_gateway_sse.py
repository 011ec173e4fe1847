"""The gateway's event stream and queue route against a scripted gRPC upstream.

The upstream is a real grpc server in this process whose OrderService answers from a script,
so the tests can make what the real server rarely does on cue (a stream failing half-way, an
idle stream, a resume with nothing left) and see what reached it (metadata, after_sequence,
the cancellation when the HTTP client leaves). The real gateway process sits in between.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from orders.v1 import orders_pb2 as pb
from orders.v1 import orders_pb2_grpc as pb_grpc

from tests.gateway_stack import ISO_MILLIS_Z, GatewayStack, sse_events
from tests.harness import wait_for

DONE, IDLE, FAIL, MISSING, SLOW = (
    f"ORD{name:A<13}" for name in ("DONE", "IDLE", "FAIL", "MISSING", "SLOW")
)
STEPS = [
    (pb.ORDER_STATUS_PENDING, "created", 0),
    (pb.ORDER_STATUS_PENDING, "queued", 10),
    (pb.ORDER_STATUS_PROCESSING, "claimed", 30),
    (pb.ORDER_STATUS_COMPLETED, "completed", 100),
]


def update(ref: str, sequence: int) -> pb.WatchOrderResponse:
    status, event, progress = STEPS[sequence - 1]
    when = Timestamp(seconds=1_704_067_200, nanos=123_456_789)  # 2024-01-01T00:00:00.123Z
    order = pb.Order(
        order_ref_no=ref,
        fund_name="Global Equity Fund",
        transaction_type=pb.TRANSACTION_TYPE_SELL,
        quantity=3,
        order_value="1234.50",
        status=status,
        created_on=when,
        updated_on=when,
    )
    return pb.WatchOrderResponse(
        order=order, progress=progress, event=event, sequence=sequence, recorded_on=when
    )


class ScriptedOrders(pb_grpc.OrderServiceServicer):  # type: ignore[misc]
    """WatchOrder and QueueStats from a script; records what the gateway sent."""

    def __init__(self) -> None:
        self.watches: list[tuple[str, int | None]] = []
        self.ended: list[str] = []
        self.lock = threading.Lock()
        self.release = threading.Event()

    def WatchOrder(self, request: Any, context: Any) -> Iterator[pb.WatchOrderResponse]:  # noqa: N802
        ref = request.order_ref_no
        after = request.after_sequence if request.HasField("after_sequence") else None
        with self.lock:
            self.watches.append((ref, after))
        context.add_callback(lambda: self.ended.append(ref))
        if ref == MISSING:
            context.abort(grpc.StatusCode.NOT_FOUND, f"order_ref_no: no order {ref}")
        if ref == SLOW:
            self.release.wait(30)
        for sequence in range((after or 0) + 1, len(STEPS) + 1):
            if ref not in (DONE, SLOW) and sequence > 2:
                break
            yield update(ref, sequence)
        if ref == FAIL:
            context.abort(grpc.StatusCode.UNAVAILABLE, "database unavailable: test")
        if ref == IDLE:
            stop = threading.Event()
            context.add_callback(stop.set)
            stop.wait(60)

    def QueueStats(self, request: Any, context: Any) -> pb.QueueStatsResponse:  # noqa: N802
        token = dict(context.invocation_metadata()).get("authorization")
        if token is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing bearer token")
        if token != "Bearer admin-token":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "admin token required")
        return pb.QueueStatsResponse(
            waiting=5, active=2, completed=100, failed=3, waiting_by_priority={"1": 4, "2": 1}
        )


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[ScriptedOrders, int]]:
    scripted = ScriptedOrders()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    pb_grpc.add_OrderServiceServicer_to_server(scripted, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield scripted, port
    finally:
        server.stop(None)


def start_gateway(workdir: Path, port: int, **env: str) -> GatewayStack:
    stack = GatewayStack(workdir, "redis://127.0.0.1:1/0", "sqlite:///unused.db")
    stack.start_gateway(
        orders_addr=f"127.0.0.1:{port}",
        GATEWAY_SSE_KEEPALIVE_S="0.3",
        GATEWAY_RPC_TIMEOUT_S="1",
        LOG_LEVEL="DEBUG",
        **env,
    )
    return stack


@pytest.fixture(scope="module")
def gateway(
    upstream: tuple[ScriptedOrders, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayStack]:
    stack = start_gateway(tmp_path_factory.mktemp("gateway-sse"), upstream[1])
    try:
        yield stack
    finally:
        stack.stop()


def read_events(reply: httpx.Response) -> list[dict[str, str]]:
    return list(sse_events(reply.iter_lines()))


def test_stream_sends_updates_then_closes_after_the_terminal_one(gateway: GatewayStack) -> None:
    with gateway.http() as client, client.stream("GET", f"/api/order/{DONE}/events") as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        assert reply.headers["cache-control"] == "no-cache"
        events = [e for e in read_events(reply) if ":" not in e]
    assert events[0] == {"retry": "2000"}
    updates = events[1:]
    assert [e["id"] for e in updates] == ["1", "2", "3", "4"]
    assert {e["event"] for e in updates} == {"update"}
    data = [json.loads(e["data"]) for e in updates]
    assert [d["status"] for d in data] == ["PENDING", "PENDING", "PROCESSING", "COMPLETED"]
    assert [d["progress"] for d in data] == [0, 10, 30, 100]
    assert [d["event"] for d in data] == ["created", "queued", "claimed", "completed"]
    first = data[0]
    assert first["orderRefNo"] == DONE and first["transactionType"] == "SELL"
    assert first["orderValue"] == 1234.5 and '"orderValue":1234.5,' in updates[0]["data"]
    assert first["createdOn"] == "2024-01-01T00:00:00.123Z" and ISO_MILLIS_Z.match(
        first["recordedOn"]
    )


def test_last_event_id_resumes_after_that_sequence(
    gateway: GatewayStack, upstream: tuple[ScriptedOrders, int]
) -> None:
    headers = {"Last-Event-ID": "2"}
    with (
        gateway.http() as client,
        client.stream("GET", f"/api/order/{DONE}/events", headers=headers) as reply,
    ):
        ids = [e["id"] for e in read_events(reply) if "id" in e]
    assert ids == ["3", "4"]
    assert (DONE, 2) in upstream[0].watches
    with gateway.http() as client:
        ended = client.get(f"/api/order/{DONE}/events", headers={"Last-Event-ID": "4"})
    assert ended.status_code == 204, ended.text  # tells EventSource to stop reconnecting


def test_errors_before_the_stream_are_json(gateway: GatewayStack) -> None:
    with gateway.http() as client:
        missing = client.get(f"/api/order/{MISSING}/events")
        bad = client.get(f"/api/order/{DONE}/events", headers={"Last-Event-ID": "-1"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
    assert bad.status_code == 400 and bad.json()["error"]["fields"][0]["field"] == "Last-Event-ID"


def test_failure_mid_stream_is_an_error_event(gateway: GatewayStack) -> None:
    with gateway.http() as client, client.stream("GET", f"/api/order/{FAIL}/events") as reply:
        events = [e for e in read_events(reply) if "event" in e]
    assert [e["event"] for e in events] == ["update", "update", "error"]
    error = json.loads(events[-1]["data"])
    assert error == {
        "success": False,
        "error": {"code": "UNAVAILABLE", "message": "database unavailable: test"},
    }


def test_idle_stream_gets_keepalives_and_client_leaving_cancels_the_call(
    gateway: GatewayStack, upstream: tuple[ScriptedOrders, int]
) -> None:
    scripted = upstream[0]
    with gateway.http() as client, client.stream("GET", f"/api/order/{IDLE}/events") as reply:
        seen: list[dict[str, str]] = []
        for event in sse_events(reply.iter_lines()):
            seen.append(event)
            if event == {":": "keepalive"}:
                break
        assert [e.get("id") for e in seen if "id" in e] == ["1", "2"]
        assert IDLE not in scripted.ended
    # The HTTP client is gone: the gateway cancels the WatchOrder call at once.
    wait_for(lambda: IDLE in scripted.ended, 10, "the upstream WatchOrder to be cancelled")
    log = gateway.services[0]
    wait_for(lambda: "event stream closed: client went away" in log.log_text(), 10, "the close log")


def test_stream_starts_with_keepalives_when_the_first_update_is_slow(
    gateway: GatewayStack, upstream: tuple[ScriptedOrders, int]
) -> None:
    with gateway.http() as client, client.stream("GET", f"/api/order/{SLOW}/events") as reply:
        # Past the RPC timeout with no update yet, and no error: the stream is open and idle.
        assert reply.status_code == 200
        events = sse_events(reply.iter_lines())
        assert next(events) == {"retry": "2000"}
        assert next(events) == {":": "keepalive"}
        upstream[0].release.set()
        ids = [e["id"] for e in events if "id" in e]
    assert ids == ["1", "2", "3", "4"]


def test_queue_route_forwards_authorization(gateway: GatewayStack) -> None:
    with gateway.http() as client:
        anonymous = client.get("/api/order/queue/status")
        other = client.get("/api/order/queue/status", headers={"Authorization": "Bearer nope"})
        admin = client.get(
            "/api/order/queue/status", headers={"Authorization": "Bearer admin-token"}
        )
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    assert anonymous.json()["error"]["code"] == "UNAUTHENTICATED"
    assert other.status_code == 403 and other.json()["error"]["code"] == "PERMISSION_DENIED"
    assert admin.status_code == 200, admin.text
    assert admin.json() == {
        "success": True,
        "data": {
            "waiting": 5,
            "active": 2,
            "completed": 100,
            "failed": 3,
            "waitingByPriority": {"1": 4, "2": 1},
        },
    }


def test_sigterm_ends_open_streams_and_exits_zero(
    upstream: tuple[ScriptedOrders, int], tmp_path: Path
) -> None:
    stack = start_gateway(tmp_path, upstream[1])
    try:
        service = stack.services[0]
        with stack.http() as client, client.stream("GET", f"/api/order/{IDLE}/events") as reply:
            lines = reply.iter_lines()
            wait_for(lambda: next(lines).startswith("id: 2"), 10, "the second update")
            service.signal(signal.SIGTERM)
            rest = list(lines)  # the stream ends instead of holding the shutdown
        assert not [line for line in rest if line.startswith("id:")], rest
        assert service.proc.wait(20) == 0, service.log_text()
        assert "event stream closed: gateway stopping" in service.log_text()
    finally:
        stack.stop()
