"""WatchOrder through real server, worker and fundhouse processes."""

from __future__ import annotations

import asyncio
import re
import signal
import threading

import grpc
import pytest
import redis
from orders.v1 import orders_pb2 as pb
from orders.v1 import orders_pb2_grpc as pb_grpc

from core.keys import UPDATES_CHANNEL
from tests.harness import RedisServer, Service, Stack, wait_for

BUY, SELL = pb.TRANSACTION_TYPE_BUY, pb.TRANSACTION_TYPE_SELL
TERMINAL = (pb.ORDER_STATUS_COMPLETED, pb.ORDER_STATUS_CANCELLED)


def place(stack: Stack, kind: int = BUY, quantity: int = 10) -> str:
    request = pb.PlaceOrderRequest(
        fund_name="Global Equity Fund", transaction_type=kind, quantity=quantity
    )
    return str(stack.stub.PlaceOrder(request, timeout=10).order_ref_no)


def watch_request(ref: str, after: int | None = None) -> pb.WatchOrderRequest:
    request = pb.WatchOrderRequest(order_ref_no=ref)
    if after is not None:
        request.after_sequence = after
    return request


def watch_all(stack: Stack, ref: str, after: int | None = None) -> list[pb.WatchOrderResponse]:
    """Every message of a stream that must end by itself with OK."""
    stream = stack.stub.WatchOrder(watch_request(ref, after), timeout=60)
    messages = list(stream)
    assert stream.code() == grpc.StatusCode.OK
    return messages


def trail(stack: Stack, ref: str) -> list[pb.WatchOrderResponse]:
    return list(
        stack.stub.ListOrderEvents(pb.ListOrderEventsRequest(order_ref_no=ref), timeout=10).events
    )


def assert_whole(messages: list[pb.WatchOrderResponse], first_sequence: int) -> None:
    """Consecutive sequences from first_sequence, progress never down, one terminal, last."""
    sequences = [m.sequence for m in messages]
    assert sequences == list(range(first_sequence, first_sequence + len(messages))), sequences
    progress = [m.progress for m in messages]
    assert progress == sorted(progress), progress
    terminal = [m for m in messages if m.order.status in TERMINAL]
    assert len(terminal) == 1 and terminal[0] is messages[-1], [m.event for m in messages]


def hub_client_ids(client: redis.Redis) -> list[int]:
    return [
        int(c["id"])
        for c in client.client_list()
        if c.get("name") == "orders-hub" and c.get("sub") == "1"
    ]


def subscribers(client: redis.Redis) -> int:
    return int(dict(client.pubsub_numsub(UPDATES_CHANNEL))[UPDATES_CHANNEL])


def test_watch_before_worker_sees_every_state_in_order(make_stack, database_url: str) -> None:
    stack = make_stack(database_url)
    stack.start_fundhouse()
    stack.start_server()
    stack.fundhouse_behaviour(fail_first=1, fail_first_status=503)
    ref = place(stack)

    live = stack.stub.WatchOrder(watch_request(ref), timeout=60)
    first = next(live)  # the current state, before any worker exists
    assert (first.event, first.sequence, first.progress) == ("queued", 2, 10)
    assert first.order.status == pb.ORDER_STATUS_PENDING
    # A second watcher resumes from the start: the stored trail, then the live updates.
    resumed = stack.stub.WatchOrder(watch_request(ref, after=0), timeout=60)
    assert next(resumed).sequence == 1

    stack.start_worker()
    messages = [first, *live]  # ends by itself after the terminal update
    assert live.code() == grpc.StatusCode.OK
    assert_whole(messages, first_sequence=2)
    assert [m.event for m in messages] == [
        "queued",
        "claimed",
        "attempt",
        "retry_scheduled",
        "attempt",
        "completed",
    ]
    statuses = [m.order.status for m in messages]
    assert statuses == [pb.ORDER_STATUS_PENDING] + [pb.ORDER_STATUS_PROCESSING] * 4 + [
        pb.ORDER_STATUS_COMPLETED
    ]
    assert [m.order.attempts for m in messages] == [0, 0, 1, 1, 2, 2]
    assert messages[-1].progress == 100 and messages[-1].order.confirmation_id
    # What was streamed is exactly the stored audit trail, message for message.
    stored = trail(stack, ref)
    assert messages == stored[1:]
    resumed_messages = list(resumed)
    assert resumed.code() == grpc.StatusCode.OK
    assert resumed_messages == stored[1:]


def test_watch_finished_order_and_resume(make_stack, sqlite_url: str) -> None:
    stack = make_stack(sqlite_url).start_all()
    ref = place(stack)
    done = wait_for(
        lambda: (m := trail(stack, ref)) and m[-1].order.status in TERMINAL and m,
        30,
        "the order to finish",
    )
    assert [m.event for m in done] == ["created", "queued", "claimed", "attempt", "completed"]

    (only,) = watch_all(stack, ref)  # one message, then the stream ends
    assert (only.event, only.sequence, only.progress) == ("completed", 5, 100)
    assert only.order.status == pb.ORDER_STATUS_COMPLETED
    assert watch_all(stack, ref, after=2) == done[2:]  # exactly the missed ones
    assert watch_all(stack, ref, after=0) == done
    assert watch_all(stack, ref, after=4) == done[4:]
    assert watch_all(stack, ref, after=5) == []  # at the terminal update: nothing, OK
    assert watch_all(stack, ref, after=500) == []


def test_watch_errors(make_stack, sqlite_url: str) -> None:
    stack = make_stack(sqlite_url)
    stack.start_server()
    pending = place(stack)  # no worker: stays PENDING at sequence 2
    cases = [
        (watch_request("ORD0000000000"), grpc.StatusCode.NOT_FOUND, "order_ref_no"),
        (watch_request("ORD0000000000", after=3), grpc.StatusCode.NOT_FOUND, "order_ref_no"),
        (watch_request("nope"), grpc.StatusCode.INVALID_ARGUMENT, "order_ref_no"),
        (watch_request(""), grpc.StatusCode.INVALID_ARGUMENT, "order_ref_no"),
        (watch_request(pending, after=-1), grpc.StatusCode.INVALID_ARGUMENT, "after_sequence"),
        (watch_request(pending, after=3), grpc.StatusCode.INVALID_ARGUMENT, "after_sequence"),
    ]
    for request, code, field in cases:
        with pytest.raises(grpc.RpcError) as err:
            list(stack.stub.WatchOrder(request, timeout=10))
        assert err.value.code() == code, (request, err.value.details())
        assert field in err.value.details()


async def _watch_async(
    stub: pb_grpc.OrderServiceStub, ref: str, started: asyncio.Event
) -> list[pb.WatchOrderResponse]:
    messages = []
    call = stub.WatchOrder(watch_request(ref), timeout=120)
    async for message in call:
        messages.append(message)
        started.set()
    assert await call.code() == grpc.StatusCode.OK
    return messages


def test_hundreds_of_watchers_all_get_their_terminal_update(make_stack, sqlite_url: str) -> None:
    stack = make_stack(sqlite_url, LOG_LEVEL="DEBUG")
    stack.start_fundhouse()
    server = stack.start_server()
    refs = [place(stack, BUY if i % 2 else SELL, i + 1) for i in range(50)]
    watchers_per_order = 6

    async def run() -> list[list[pb.WatchOrderResponse]]:
        async with grpc.aio.insecure_channel(stack.address) as channel:
            stub = pb_grpc.OrderServiceStub(channel)
            started = [asyncio.Event() for _ in range(len(refs) * watchers_per_order)]
            tasks = [
                asyncio.create_task(_watch_async(stub, refs[i % len(refs)], started[i]))
                for i in range(len(started))
            ]
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 60)
            await asyncio.to_thread(stack.start_worker, WORKER_CONCURRENCY="4")
            return await asyncio.wait_for(asyncio.gather(*tasks), 120)

    results = asyncio.run(run())
    assert len(results) == 300
    for i, messages in enumerate(results):
        # Streams that open together share one read of their orders' current state: each
        # still starts from its own order.
        first = messages[0].order
        assert (first.order_ref_no, first.quantity) == (refs[i % len(refs)], i % len(refs) + 1)
        assert messages[0].sequence == 2, messages[0]
        assert_whole(messages, first_sequence=2)
        assert messages[-1].order.status == pb.ORDER_STATUS_COMPLETED
        assert messages[-1].order.order_ref_no == refs[i % len(refs)]
    wait_for(lambda: last_open_streams(server) == 0, 10, "the hub to count 0 open streams")


def last_open_streams(server: Service) -> int | None:
    counts = re.findall(r"watch (?:opened|closed) .*open_streams=(\d+)", server.log_text())
    return int(counts[-1]) if counts else None


def _kill_hub_until(client: redis.Redis, stop: threading.Event, kills: list[int]) -> None:
    while not stop.wait(0.1):
        for client_id in hub_client_ids(client):
            if client.client_kill_filter(_id=client_id):
                kills.append(client_id)


def test_watchers_finish_when_the_hub_subscription_is_killed(
    make_stack, sqlite_url: str, redis_client: redis.Redis
) -> None:
    stack = make_stack(sqlite_url)
    stack.start_fundhouse()
    server = stack.start_server()
    stack.fundhouse_behaviour(latency_ms=300)
    refs = [place(stack) for _ in range(8)]
    streams = [stack.stub.WatchOrder(watch_request(ref), timeout=120) for ref in refs * 3]
    firsts = [next(s) for s in streams]
    assert len(hub_client_ids(redis_client)) == 1, redis_client.client_list()

    # Kill the hub's connection again and again while the orders are being processed:
    # updates published while it is down are lost to pub/sub and must come from the trail.
    stop, kills = threading.Event(), []
    killer = threading.Thread(target=_kill_hub_until, args=(redis_client, stop, kills))
    killer.start()
    try:
        stack.start_worker(WORKER_CONCURRENCY="2")
        wait_for(lambda: len(kills) >= 5, 60, "five kills of the hub connection")
    finally:
        stop.set()
        killer.join()
    for first, stream in zip(firsts, streams, strict=True):
        messages = [first, *stream]
        assert stream.code() == grpc.StatusCode.OK
        assert_whole(messages, first_sequence=2)
        assert messages[-1].order.status == pb.ORDER_STATUS_COMPLETED
    log = server.log_text()
    assert "update hub lost redis" in log
    wait_for(lambda: subscribers(redis_client) == 1, 10, "one subscription again")


def test_cancelled_watchers_are_cleaned_up(
    make_stack, sqlite_url: str, redis_client: redis.Redis
) -> None:
    stack = make_stack(sqlite_url, LOG_LEVEL="DEBUG")
    server = stack.start_server()
    refs = [place(stack) for _ in range(3)]
    wait_for(lambda: subscribers(redis_client) == 1, 10, "the hub to subscribe")
    streams = [stack.stub.WatchOrder(watch_request(ref), timeout=60) for ref in refs * 5]
    for stream in streams:
        assert next(stream).event == "queued"
    assert last_open_streams(server) == 15
    for stream in streams:
        stream.cancel()
    wait_for(lambda: last_open_streams(server) == 0, 10, "the hub to count 0 open streams")
    assert subscribers(redis_client) == 1  # still the one subscription, none per watcher
    assert len(hub_client_ids(redis_client)) == 1


def test_shutdown_ends_open_streams(make_stack, sqlite_url: str) -> None:
    stack = make_stack(sqlite_url)
    server = stack.start_server(SHUTDOWN_GRACE_S="300")
    ref = place(stack)
    stream = stack.stub.WatchOrder(watch_request(ref), timeout=120)
    last = next(stream)
    server.signal(signal.SIGTERM)
    with pytest.raises(grpc.RpcError) as err:
        next(stream)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "after_sequence" in err.value.details()
    # The open stream did not hold the shutdown for its 300 s grace.
    assert server.proc.wait(60) == 0, server.log_text()
    assert last.sequence == 2


def test_watcher_finishes_after_redis_outage(make_stack, sqlite_url: str, tmp_path) -> None:
    private = RedisServer(tmp_path / "redis-outage")
    private.start()
    try:
        stack = make_stack(sqlite_url)
        stack.redis_url = private.url
        stack.start_fundhouse()
        server = stack.start_server()
        stack.start_worker()
        stack.fundhouse_behaviour(latency_ms=1500)
        ref = place(stack)
        stream = stack.stub.WatchOrder(watch_request(ref), timeout=120)
        seen = [next(stream)]
        while seen[-1].event != "claimed":
            seen.append(next(stream))
        # Redis goes away while the third party is working: the outcome is written to the
        # database but its PUBLISH fails; the hub keeps retrying with a growing delay.
        private.stop()
        wait_for(
            lambda: len(re.findall(r"update hub lost redis", server.log_text())) >= 3,
            60,
            "the hub to retry a few times",
        )
        wait_for(lambda: trail(stack, ref)[-1].event == "completed", 30, "the order to complete")
        private.start()  # same port
        seen.extend(stream)
        assert stream.code() == grpc.StatusCode.OK
        assert_whole(seen, first_sequence=seen[0].sequence)
        assert seen[-1].event == "completed"
        delays = [float(d) for d in re.findall(r"reconnecting in ([\d.]+)s", server.log_text())]
        assert delays[:3] == [0.1, 0.2, 0.4], delays
    finally:
        private.stop()
