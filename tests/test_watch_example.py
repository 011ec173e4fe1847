"""The asyncio watcher example against a scripted server (grpcio-testing): it resumes a
broken stream with after_sequence and prints each update once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc_testing
import pytest
from orders.v1 import orders_pb2 as pb
from orders.v1 import orders_pb2_grpc as pb_grpc

from clients.watch_example import follow
from tests.harness import wait_for
from tests.test_orderctl import REF, SERVICE, UPDATES, update

_END = object()


class ScriptedWatch:
    """follow() in a thread, on a grpc_testing channel (sync: its streams are read in a
    worker thread and handed to the event loop)."""

    def __init__(self, max_retries: int = 3) -> None:
        self.channel = grpc_testing.channel([SERVICE], grpc_testing.strict_real_time())
        self.stub = pb_grpc.OrderServiceStub(self.channel)
        self.seen: list[int] = []
        self.sleeps: list[float] = []
        self.result: Any = None
        self.thread = threading.Thread(target=self._run, args=(max_retries,), daemon=True)
        self.thread.start()

    def _open(self, request: pb.WatchOrderRequest) -> AsyncIterator[pb.WatchOrderResponse]:
        call = self.stub.WatchOrder(request)

        async def stream() -> AsyncIterator[pb.WatchOrderResponse]:
            while (item := await asyncio.to_thread(next, call, _END)) is not _END:
                yield item

        return stream()

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def _run(self, max_retries: int) -> None:
        try:
            self.result = asyncio.run(
                follow(
                    self._open,
                    REF,
                    lambda u: self.seen.append(u.sequence),
                    max_retries=max_retries,
                    sleep=self._sleep,
                )
            )
        except grpc.RpcError as exc:
            self.result = exc

    def take(self):  # noqa: ANN201 - (metadata, request, rpc)
        return self.channel.take_unary_stream(SERVICE.methods_by_name["WatchOrder"])

    def wait_seen(self, count: int) -> None:
        # grpc_testing drops unread responses when an RPC ends with an error.
        wait_for(lambda: len(self.seen) >= count, 10, f"{count} updates to be handled")

    def finish(self) -> Any:
        self.thread.join(15)
        assert not self.thread.is_alive(), "follow() did not return"
        return self.result


def test_resumes_after_a_broken_stream_with_after_sequence() -> None:
    watch = ScriptedWatch()
    _, request, rpc = watch.take()
    assert not request.HasField("after_sequence")
    for u in UPDATES[:2]:
        rpc.send_response(u)
    watch.wait_seen(2)
    rpc.terminate((), grpc.StatusCode.UNAVAILABLE, "connection reset by peer")

    _, request, rpc = watch.take()
    assert request.order_ref_no == REF and request.after_sequence == 2
    rpc.send_response(UPDATES[3])
    watch.wait_seen(3)
    rpc.terminate((), grpc.StatusCode.INTERNAL, "RST_STREAM")  # broken again, mid-order

    _, request, rpc = watch.take()
    assert request.after_sequence == 4
    for u in UPDATES[2:]:  # 3 arrives late and 4 again: neither is printed twice
        rpc.send_response(u)
    final = watch.finish()
    assert isinstance(final, pb.WatchOrderResponse) and final.event == "completed"
    assert watch.seen == [1, 2, 4, 5]
    assert len(watch.sleeps) == 2


def test_a_stream_that_ends_early_is_watched_again() -> None:
    watch = ScriptedWatch()
    _, _, rpc = watch.take()
    rpc.send_response(UPDATES[0])
    rpc.terminate((), grpc.StatusCode.OK, "")
    _, request, rpc = watch.take()
    assert request.after_sequence == 1
    rpc.send_response(update(2, "cancelled", pb.ORDER_STATUS_CANCELLED, 100))
    assert watch.finish().event == "cancelled"
    assert watch.seen == [1, 2]


@pytest.mark.parametrize("code", [grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAUTHENTICATED])
def test_an_answer_is_not_retried(code: grpc.StatusCode) -> None:
    watch = ScriptedWatch()
    watch.take()[2].terminate((), code, "no")
    error = watch.finish()
    assert isinstance(error, grpc.RpcError) and error.code() == code
    assert watch.sleeps == []


def test_gives_up_after_max_retries() -> None:
    watch = ScriptedWatch(max_retries=2)
    for _ in range(3):
        watch.take()[2].terminate((), grpc.StatusCode.UNAVAILABLE, "down")
    error = watch.finish()
    assert isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.UNAVAILABLE
    assert len(watch.sleeps) == 2
