"""The one place where domain errors become gRPC status codes (with rich details)."""

from __future__ import annotations

import logging
from types import TracebackType

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from core import errors

logger = logging.getLogger(__name__)

#: Most specific first: the first matching class wins.
CODES: list[tuple[type[errors.OrderError], grpc.StatusCode]] = [
    (errors.InvalidField, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.IdempotencyConflict, grpc.StatusCode.ALREADY_EXISTS),
    (errors.QueueFull, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
]


def code_for(exc: errors.OrderError) -> grpc.StatusCode:
    """The gRPC status code of a domain error (INTERNAL only for an unmapped class)."""
    for cls, code in CODES:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


def to_status(exc: errors.OrderError) -> grpc.Status:
    """A grpc.Status with the message and, for field errors, google.rpc.BadRequest."""
    code = code_for(exc)
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=str(exc))
    if isinstance(exc, errors.InvalidField):
        detail = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=exc.field, description=exc.reason)
            ]
        )
        status.details.add().Pack(detail)
    return rpc_status.to_status(status)


class map_errors:  # noqa: N801 - used as a function: `async with map_errors(context):`
    """Turn a domain error raised inside the block into an aborted RPC.

    A class rather than an @asynccontextmanager: it is entered on every RPC, and the
    generator-based form cost a generator and two extra awaits each time.
    """

    __slots__ = ("context",)

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self.context = context

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if isinstance(exc, errors.OrderError):
            status = to_status(exc)
            await self.context.abort(status.code, status.details, status.trailing_metadata)
        return False
