"""What callers send, checked for shape and type before anything reaches the gRPC server.

The gateway rejects only what cannot be put into a request message (wrong JSON types,
missing fields, values that do not fit int64 or UTF-8); the server still validates meaning
(ranges, names) and its INVALID_ARGUMENT comes back as the same kind of 400.
"""

from __future__ import annotations

import json
from typing import Any

from orders.v1 import orders_pb2 as pb

from gateway.convert import TRANSACTION_TYPES
from gateway.errors import ApiError, FieldViolation, invalid

MAX_BODY_BYTES = 64 * 1024
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes) -> Any:
    """The decoded JSON body, or a 400 saying why it is not JSON."""
    if len(body) > MAX_BODY_BYTES:
        raise invalid([FieldViolation("body", f"must be at most {MAX_BODY_BYTES} bytes")])
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        # UnicodeDecodeError and JSONDecodeError are ValueErrors; deep nesting recurses.
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise ApiError(
            400, "INVALID_ARGUMENT", f"request body is not valid JSON: {reason}"
        ) from None


def _text(data: dict[str, Any], name: str, problems: list[FieldViolation]) -> str | None:
    value = data.get(name)
    if value is None:
        problems.append(FieldViolation(name, "is required"))
        return None
    if not isinstance(value, str):
        problems.append(FieldViolation(name, "must be a string"))
        return None
    if not utf8(value):
        problems.append(FieldViolation(name, "must be valid Unicode text"))
        return None
    return value


def utf8(text: str) -> bool:
    """False for text protobuf cannot carry (lone surrogates from JSON \\ud800 escapes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def place_request(body: bytes, idempotency_key: str | None) -> pb.PlaceOrderRequest:
    """POST /api/order's body and Idempotency-Key header as a PlaceOrderRequest."""
    data = parse_json(body)
    if not isinstance(data, dict):
        raise ApiError(400, "INVALID_ARGUMENT", "request body must be a JSON object")
    problems: list[FieldViolation] = []
    fund_name = _text(data, "fundName", problems)
    kind = _text(data, "transactionType", problems)
    if kind is not None and kind not in TRANSACTION_TYPES:
        problems.append(FieldViolation("transactionType", 'must be "BUY" or "SELL"'))
    quantity = data.get("quantity")
    if quantity is None:
        problems.append(FieldViolation("quantity", "is required"))
    elif isinstance(quantity, bool) or not isinstance(quantity, int):
        problems.append(FieldViolation("quantity", "must be a whole number"))
    elif not INT64_MIN <= quantity <= INT64_MAX:
        problems.append(FieldViolation("quantity", "is out of range"))
    if problems or fund_name is None or kind is None or not isinstance(quantity, int):
        raise invalid(problems)
    request = pb.PlaceOrderRequest(
        fund_name=fund_name, transaction_type=TRANSACTION_TYPES[kind], quantity=quantity
    )
    if idempotency_key is not None:
        request.idempotency_key = idempotency_key
    return request


def order_ref(ref: str) -> str:
    """A path's order ref; its format is the server's to judge."""
    if not utf8(ref):
        raise invalid([FieldViolation("orderRefNo", "must be valid Unicode text")])
    return ref


def last_event_id(header: str | None) -> int | None:
    """The Last-Event-ID a reconnecting EventSource sends: the sequence it saw last."""
    if header is None or header.strip() == "":
        return None
    text = header.strip()
    if not text.isascii() or not text.isdigit() or int(text) > INT64_MAX:
        raise invalid([FieldViolation("Last-Event-ID", "must be an update sequence number")])
    return int(text)


def auth_metadata(header: str | None) -> tuple[tuple[str, str], ...]:
    """The caller's Authorization header as gRPC metadata, forwarded unchanged."""
    if header is None:
        return ()
    if not all(32 <= ord(c) <= 126 for c in header):
        raise ApiError(401, "UNAUTHENTICATED", "Authorization header must be printable ASCII")
    return (("authorization", header),)
