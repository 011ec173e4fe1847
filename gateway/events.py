"""Server-Sent Events: a WatchOrder stream as `event: update` messages for browsers and curl."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import grpc
from orders.v1 import orders_pb2 as pb
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from gateway import convert
from gateway.errors import ApiError, from_rpc_error

logger = logging.getLogger(__name__)

#: Advice to EventSource: reconnect after 2 s (it then sends Last-Event-ID).
RETRY_MS = 2000
KEEPALIVE = ": keepalive\n\n"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def format_event(event: str, data: dict[str, Any], event_id: int | None = None) -> str:
    """One SSE message; the JSON is on one line, so one `data:` field carries it."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def update_event(message: pb.WatchOrderResponse) -> str:
    return format_event("update", convert.update(message), message.sequence)


def error_event(error: ApiError) -> str:
    return format_event("error", error.body())


class EventStream(StreamingResponse):
    """text/event-stream whose producer is cancelled the moment the client disconnects.

    Starlette only listens for the disconnect on ASGI servers older than spec 2.4 and
    otherwise learns of it at the next write, which on an idle stream is the next keepalive;
    listening always means the gRPC stream behind it is cancelled at once.
    """

    media_type = "text/event-stream"

    def __init__(self, watch: Watch) -> None:
        super().__init__(watch.events(), headers=HEADERS)
        self.watch = watch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:

                async def produce() -> None:
                    await self.stream_response(send)
                    group.cancel_scope.cancel()

                group.start_soon(produce)
                await self.listen_for_disconnect(receive)
                group.cancel_scope.cancel()
        except* OSError:
            logger.info("event stream client went away while being written to")
        finally:
            # Also when the producer never started or was stopped between two events.
            self.watch.close()


class Watch:
    """One client's WatchOrder call relayed as SSE, with keepalives and a prompt stop."""

    def __init__(
        self,
        call: grpc.aio.UnaryStreamCall[pb.WatchOrderRequest, pb.WatchOrderResponse],
        first: asyncio.Future[Any],
        ref: str,
        keepalive_s: float,
        closing: asyncio.Event,
    ) -> None:
        self.call = call
        self.read = first
        self.ref = ref
        self.keepalive_s = keepalive_s
        self.closing = closing

    async def events(self) -> AsyncIterator[str]:
        """The SSE text: retry advice, then updates until the terminal one (or an error)."""
        reason = "client went away"
        stopping = asyncio.ensure_future(self.closing.wait())
        try:
            yield f"retry: {RETRY_MS}\n\n"
            while True:
                done, _ = await asyncio.wait(
                    {self.read, stopping},
                    timeout=self.keepalive_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if stopping in done:
                    # The gateway is stopping: end the stream; EventSource reconnects
                    # (to this or another gateway) with Last-Event-ID and misses nothing.
                    reason = "gateway stopping"
                    return
                if self.read not in done:
                    yield KEEPALIVE
                    continue
                try:
                    message = self.read.result()
                except grpc.aio.AioRpcError as exc:
                    reason = f"stream failed: {exc.code().name}"
                    yield error_event(from_rpc_error(exc))
                    return
                if message is grpc.aio.EOF:
                    reason = "server ended the stream"
                    return
                yield update_event(message)
                if message.order.status in convert.TERMINAL:
                    reason = "terminal update sent"
                    return
                self.read = asyncio.ensure_future(self.call.read())
        finally:
            stopping.cancel()
            self.close()
            logger.info("event stream closed: %s", reason, extra={"ref": self.ref})

    def close(self) -> None:
        """Cancel the gRPC call (idempotent): the server stops its watch at once."""
        self.read.cancel()
        self.call.cancel()
