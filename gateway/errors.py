"""The one place where gRPC status codes become HTTP answers: {"success": false, "error": ...}.

A gRPC error keeps its code name in the body (`"code": "NOT_FOUND"`), so REST callers see the
same vocabulary as gRPC ones; the HTTP status comes from HTTP_STATUS. Field errors carry the
server's google.rpc.BadRequest violations, renamed to the REST field names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from starlette.responses import JSONResponse

logger = logging.getLogger(__name__)

#: gRPC code -> HTTP status, as grpc-gateway maps them, except that a missed deadline is 503
#: (the gateway could not get an answer in time; the caller may retry). Codes missing here
#: are server faults: 500.
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 503,
    grpc.StatusCode.CANCELLED: 503,
}

#: Proto field names as the REST API spells them (JSON body keys and headers).
REST_FIELD = {
    "fund_name": "fundName",
    "transaction_type": "transactionType",
    "quantity": "quantity",
    "idempotency_key": "Idempotency-Key",
    "order_ref_no": "orderRefNo",
    "after_sequence": "Last-Event-ID",
}


@dataclass(frozen=True)
class FieldViolation:
    """One bad request field, named as the REST API names it."""

    field: str
    description: str


@dataclass
class ApiError(Exception):
    """An answer other than success, raised anywhere in a handler."""

    status: int
    code: str
    message: str
    fields: list[FieldViolation] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def body(self) -> dict[str, object]:
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.fields:
            error["fields"] = [
                {"field": v.field, "description": v.description} for v in self.fields
            ]
        return {"success": False, "error": error}

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        extra = dict(headers or {})
        if self.status == 401:
            extra.setdefault("WWW-Authenticate", "Bearer")
        return JSONResponse(self.body(), status_code=self.status, headers=extra)


def invalid(violations: list[FieldViolation]) -> ApiError:
    """A 400 naming every bad field of a request the gateway itself rejects."""
    message = "; ".join(f"{v.field}: {v.description}" for v in violations)
    return ApiError(400, grpc.StatusCode.INVALID_ARGUMENT.name, message, violations)


def rest_message(message: str) -> str:
    """The server's message with a leading proto field name in its REST spelling."""
    name, sep, rest = message.partition(":")
    if sep and name in REST_FIELD:
        return f"{REST_FIELD[name]}:{rest}"
    return message


def from_rpc_error(exc: grpc.aio.AioRpcError) -> ApiError:
    """The HTTP answer for a failed gRPC call."""
    code = exc.code()
    status = HTTP_STATUS.get(code, 500)
    details = exc.details() or code.name
    if status == 500:
        logger.error("server fault: %s %s", code.name, details)
    elif code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
        logger.warning("server unavailable: %s %s", code.name, details)
    violations = _violations(exc)
    message = (
        "; ".join(f"{v.field}: {v.description}" for v in violations)
        if violations
        else rest_message(details)
    )
    return ApiError(status, code.name, message, violations)


def _violations(exc: grpc.aio.AioRpcError) -> list[FieldViolation]:
    try:
        status = rpc_status.from_call(exc)
    except ValueError:
        # A rich status that disagrees with the call's own code: keep the plain message.
        logger.warning("inconsistent grpc-status-details-bin from the server")
        return []
    if status is None:
        return []
    violations = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations += [
                FieldViolation(REST_FIELD.get(v.field, v.field), v.description)
                for v in bad.field_violations
            ]
    return violations
