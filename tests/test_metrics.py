"""Prometheus metrics scraped over HTTP from real server and worker processes."""

from __future__ import annotations

import threading
import urllib.request

import grpc
import pytest
from orders.v1 import orders_pb2 as pb
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import Stack, free_port, wait_for
from tests.test_order_path import place, wait_terminal

PLACE = "orders.v1.OrderService/PlaceOrder"
STATUS = "orders.v1.OrderService/GetStatus"
WATCH = "orders.v1.OrderService/WatchOrder"


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics, keyed by (sample name, labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_server_and_worker_metrics(make_stack, sqlite_url: str) -> None:
    server_port, worker_port = free_port(), free_port()
    stack: Stack = make_stack(sqlite_url)
    stack.start_fundhouse()
    stack.start_server(METRICS_PORT=str(server_port))

    # Before any worker runs, the orders wait on their lists.
    buy = place(stack, kind=pb.TRANSACTION_TYPE_BUY).order_ref_no
    sell = place(stack, kind=pb.TRANSACTION_TYPE_SELL).order_ref_no
    with pytest.raises(grpc.RpcError):
        stack.stub.GetStatus(pb.GetStatusRequest(order_ref_no="ORD0000000000NOPE"), timeout=5)
    with pytest.raises(grpc.RpcError):
        stack.stub.GetStatus(pb.GetStatusRequest(order_ref_no="bad ref"), timeout=5)
    # The interceptor counts an RPC once its answer is sent: the last one may still be
    # in flight on the server when the client has its error back.
    wait_for(
        lambda: (
            value(
                scrape(server_port),
                "orders_rpc_handled_total",
                method=STATUS,
                code="INVALID_ARGUMENT",
            )
            == 1
        ),
        10,
        "the last GetStatus to be counted",
    )
    server = scrape(server_port)
    assert value(server, "orders_queue_depth", priority="1") == 1
    assert value(server, "orders_queue_depth", priority="2") == 1
    assert value(server, "orders_placed_total", type="BUY") == 1
    assert value(server, "orders_placed_total", type="SELL") == 1
    assert value(server, "orders_rpc_handled_total", method=PLACE, code="OK") == 2
    assert value(server, "orders_rpc_handled_total", method=STATUS, code="NOT_FOUND") == 1
    assert value(server, "orders_rpc_handled_total", method=STATUS, code="INVALID_ARGUMENT") == 1
    assert value(server, "orders_rpc_duration_seconds_count", method=PLACE) == 2
    assert value(server, "orders_dependency_up", dependency="redis") == 1
    assert value(server, "orders_dependency_up", dependency="database") == 1
    assert value(server, "orders_watch_streams_open") == 0
    # Health checks go through the same interceptor.
    assert value(
        server, "orders_rpc_handled_total", method="grpc.health.v1.Health/Check", code="OK"
    )

    # One WatchOrder stream open on the waiting BUY order, until it completes.
    stream = stack.stub.WatchOrder(pb.WatchOrderRequest(order_ref_no=buy), timeout=60)
    reader = threading.Thread(target=lambda: [None for _ in stream], daemon=True)
    reader.start()
    wait_for(
        lambda: value(scrape(server_port), "orders_watch_streams_open") == 1,
        10,
        "orders_watch_streams_open to count the open stream",
    )

    # The first call of each order fails once (503), so each is retried once.
    stack.fundhouse_behaviour(fail_first=1)
    stack.start_worker(WORKER_METRICS_PORT=str(worker_port))
    for ref in (buy, sell):
        assert wait_terminal(stack, ref).status == pb.ORDER_STATUS_COMPLETED
    worker = wait_for(
        lambda: (
            (s := scrape(worker_port))
            and value(s, "orders_worker_outcomes_total", outcome="completed") == 2
            and s
        ),
        10,
        "the worker to count two completed orders",
    )
    assert value(worker, "orders_worker_outcomes_total", outcome="cancelled") == 0
    assert value(worker, "orders_third_party_attempts_total", result="placed") == 2
    assert value(worker, "orders_third_party_attempts_total", result="unavailable") == 2
    assert value(worker, "orders_third_party_attempts_total", result="rejected") == 0
    assert value(worker, "orders_third_party_duration_seconds_count", result="placed") == 2
    assert value(worker, "orders_worker_retries_total") == 2
    assert value(worker, "orders_worker_orders_in_progress") == 0
    for action in ("recovered", "requeued", "cancelled"):
        assert value(worker, "orders_reaper_actions_total", action=action) == 0
    reader.join(10)
    server = wait_for(
        lambda: (
            (s := scrape(server_port))
            and value(s, "orders_watch_streams_open") == 0
            and value(s, "orders_rpc_handled_total", method=WATCH, code="OK") == 1
            and s
        ),
        10,
        "the finished stream to be closed and counted",
    )
    assert value(server, "orders_queue_depth", priority="1") == 0
    assert value(server, "orders_queue_depth", priority="2") == 0


def test_reaper_actions_are_counted(make_stack, sqlite_url: str) -> None:
    stack: Stack = make_stack(sqlite_url)
    stack.start_fundhouse()
    stack.start_server()
    stack.fundhouse_behaviour(latency_ms=3000)
    fast = {"ORDER_LEASE_SECONDS": "1.5", "REAPER_INTERVAL_S": "0.3"}
    doomed = stack.start_worker(**fast)
    ref = place(stack).order_ref_no

    def processing() -> bool:
        reply = stack.stub.GetStatus(pb.GetStatusRequest(order_ref_no=ref), timeout=5)
        return reply.order.status == pb.ORDER_STATUS_PROCESSING

    wait_for(processing, 20, "the first worker to claim the order")
    doomed.kill()  # kill -9 while the third-party call is in flight
    stack.fundhouse_behaviour(latency_ms=0)
    port = free_port()
    stack.start_worker(WORKER_METRICS_PORT=str(port), **fast)
    assert wait_terminal(stack, ref).status == pb.ORDER_STATUS_COMPLETED
    samples = scrape(port)
    assert value(samples, "orders_reaper_actions_total", action="recovered") == 1
    assert value(samples, "orders_reaper_actions_total", action="cancelled") == 0
    assert value(samples, "orders_worker_outcomes_total", outcome="completed") == 1


def test_auth_rejections_are_counted(make_stack, sqlite_url: str) -> None:
    port = free_port()
    stack: Stack = make_stack(sqlite_url, API_TOKENS="alice:alice-token-1234")
    stack.start_server(METRICS_PORT=str(port))
    with pytest.raises(grpc.RpcError) as err:
        stack.stub.ListFunds(pb.ListFundsRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    funds = "orders.v1.OrderService/ListFunds"
    wait_for(
        lambda: (
            value(scrape(port), "orders_rpc_handled_total", method=funds, code="UNAUTHENTICATED")
            == 1
        ),
        10,
        "the rejected call to be counted",
    )
