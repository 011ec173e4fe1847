"""The REST routes: each turns an HTTP request into one gRPC call and the answer into JSON."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import grpc
from orders.v1 import orders_pb2 as pb
from orders.v1 import orders_pb2_grpc as pb_grpc
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway import convert, inputs, openapi
from gateway.errors import ApiError, FieldViolation, from_rpc_error, invalid
from gateway.events import EventStream, Watch
from gateway.settings import GatewaySettings

logger = logging.getLogger(__name__)

T = TypeVar("T")

CHANNEL_OPTIONS = [
    # Keepalive pings notice a dead server under an idle event stream.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


def ok(data: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse({"success": True, "data": data}, status_code=status)


class Gateway:
    """The routes over one grpc.aio channel, opened and closed with the app's lifespan."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.closing = asyncio.Event()
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.OrderServiceStub | None = None

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._channel = grpc.aio.insecure_channel(
            self.settings.orders_addr, options=CHANNEL_OPTIONS
        )
        self._stub = pb_grpc.OrderServiceStub(self._channel)  # type: ignore[no-untyped-call]
        try:
            yield
        finally:
            self.closing.set()
            await self._channel.close(grace=None)

    @property
    def stub(self) -> pb_grpc.OrderServiceStub:
        if self._stub is None:
            raise RuntimeError("the gateway's gRPC channel is not open (lifespan not started)")
        return self._stub

    def routes(self) -> list[Route]:
        # The literal queue route comes first: "queue" is never read as an order ref.
        return [
            Route("/openapi.json", self.openapi, methods=["GET"]),
            Route("/api/order", self.place, methods=["POST"]),
            Route("/api/order/queue/status", self.queue_status, methods=["GET"]),
            Route("/api/order/{orderRefNo}/status", self.status, methods=["GET"]),
            Route("/api/order/{orderRefNo}/events", self.events, methods=["GET"]),
        ]

    async def _unary(
        self, method: Callable[..., Awaitable[T]], message: object, request: Request
    ) -> T:
        metadata = inputs.auth_metadata(request.headers.get("authorization"))
        try:
            return await method(message, metadata=metadata, timeout=self.settings.rpc_timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi.document())

    async def place(self, request: Request) -> Response:
        """POST /api/order -> 202 Submitted."""
        body = await read_body(request)
        message = inputs.place_request(body, request.headers.get("idempotency-key"))
        reply = await self._unary(self.stub.PlaceOrder, message, request)
        return ok(convert.placed(reply), status=202)

    async def status(self, request: Request) -> Response:
        """GET /api/order/{orderRefNo}/status."""
        ref = inputs.order_ref(request.path_params["orderRefNo"])
        reply = await self._unary(
            self.stub.GetStatus, pb.GetStatusRequest(order_ref_no=ref), request
        )
        return ok(convert.order_status(reply.order))

    async def queue_status(self, request: Request) -> Response:
        """GET /api/order/queue/status (admin)."""
        reply = await self._unary(self.stub.QueueStats, pb.QueueStatsRequest(), request)
        return ok(convert.queue_stats(reply))

    async def events(self, request: Request) -> Response:
        """GET /api/order/{orderRefNo}/events: WatchOrder as Server-Sent Events.

        The first update is awaited (up to the RPC timeout) before answering, so a bad or
        unknown ref is a plain 400/404; a resume with nothing left to send is 204, which
        tells EventSource to stop reconnecting.
        """
        ref = inputs.order_ref(request.path_params["orderRefNo"])
        after = inputs.last_event_id(request.headers.get("last-event-id"))
        metadata = inputs.auth_metadata(request.headers.get("authorization"))
        message = pb.WatchOrderRequest(order_ref_no=ref)
        if after is not None:
            message.after_sequence = after
        call = self.stub.WatchOrder(message, metadata=metadata)
        first = asyncio.ensure_future(call.read())
        try:
            done, _ = await asyncio.wait({first}, timeout=self.settings.rpc_timeout_s)
            if first in done and first.result() is grpc.aio.EOF:
                call.cancel()
                return Response(status_code=204)
        except grpc.aio.AioRpcError as exc:
            call.cancel()
            raise from_rpc_error(exc) from None
        except BaseException:
            first.cancel()
            call.cancel()
            raise
        return EventStream(Watch(call, first, ref, self.settings.sse_keepalive_s, self.closing))


async def read_body(request: Request) -> bytes:
    """The request body, refused with 400 past inputs.MAX_BODY_BYTES without reading it all."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > inputs.MAX_BODY_BYTES:
            raise invalid(
                [FieldViolation("body", f"must be at most {inputs.MAX_BODY_BYTES} bytes")]
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def http_error(request: Request, exc: Exception) -> Response:
    """Routing misses in the same envelope: 404 for no such path, 405 with Allow."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        error = ApiError(405, "UNIMPLEMENTED", f"method {request.method} not allowed here")
    elif exc.status_code == 404:
        error = ApiError(404, "NOT_FOUND", f"no route {request.url.path}")
    else:
        error = ApiError(exc.status_code, "INVALID_ARGUMENT", exc.detail)
    return error.response(dict(exc.headers or {}))


async def server_fault(request: Request, exc: Exception) -> Response:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return ApiError(500, "INTERNAL", "internal error in the gateway").response()


def build_app(settings: GatewaySettings) -> Starlette:
    """The ASGI app; its gRPC channel opens when the server starts it (lifespan)."""
    gateway = Gateway(settings)
    app = Starlette(
        routes=gateway.routes(),
        lifespan=gateway.lifespan,
        exception_handlers={
            ApiError: api_error,
            HTTPException: http_error,
            Exception: server_fault,
        },
    )
    app.state.gateway = gateway
    return app
