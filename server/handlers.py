"""Method handlers for OrderService with request decoding in our own hands.

Stock grpcio answers a request that is not valid protobuf with INTERNAL or UNKNOWN before any
service code runs; here a decode failure becomes a marker that the handler turns into
INVALID_ARGUMENT.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import aclosing
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.message import DecodeError, Message
from orders.v1 import orders_pb2 as pb

SERVICE_NAME = "orders.v1.OrderService"


class MalformedRequest:
    """Stands in for a request whose bytes did not decode."""

    def __init__(self, message_type: str, error: str) -> None:
        self.message_type = message_type
        self.error = error


def _decoder(cls: type[Message]) -> Callable[[bytes], Any]:
    def decode(data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except (DecodeError, ValueError, RuntimeError) as exc:
            return MalformedRequest(cls.DESCRIPTOR.full_name, str(exc) or type(exc).__name__)

    return decode


async def _abort_malformed(context: grpc.aio.ServicerContext, request: MalformedRequest) -> None:
    await context.abort(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"request: not a valid {request.message_type} message ({request.error})",
    )


def _guard_unary(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, MalformedRequest):
            await _abort_malformed(context, request)
        return await fn(request, context)

    return handler


def _guard_stream(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, MalformedRequest):
            await _abort_malformed(context, request)
        # aclosing: a cancelled stream closes the inner generator now, not at garbage collection.
        async with aclosing(fn(request, context)) as items:
            async for item in items:
                yield item

    return handler


def _serialize(message: Message | bytes) -> bytes:
    # A streaming handler may yield bytes it serialized once for many streams (WatchOrder).
    return message if isinstance(message, bytes) else message.SerializeToString()


def generic_handler(service: object) -> grpc.GenericRpcHandler:
    """The OrderService handler for server.add_generic_rpc_handlers."""
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    # Built from the service descriptor, so an RPC added to the proto cannot be forgotten.
    for method in pb.DESCRIPTOR.services_by_name["OrderService"].methods:
        req = message_factory.GetMessageClass(method.input_type)
        impl = getattr(service, method.name)
        if method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                _guard_stream(impl),
                request_deserializer=_decoder(req),
                response_serializer=_serialize,
            )
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                _guard_unary(impl),
                request_deserializer=_decoder(req),
                response_serializer=_serialize,
            )
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)
