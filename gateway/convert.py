"""orders.v1 messages as the original REST API's JSON shapes."""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal, InvalidOperation
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from orders.v1 import orders_pb2 as pb

logger = logging.getLogger(__name__)

SUBMITTED = "Submitted"
TERMINAL = frozenset({pb.ORDER_STATUS_COMPLETED, pb.ORDER_STATUS_CANCELLED})

_STATUS: dict[int, str] = {
    pb.ORDER_STATUS_PENDING: "PENDING",
    pb.ORDER_STATUS_PROCESSING: "PROCESSING",
    pb.ORDER_STATUS_COMPLETED: "COMPLETED",
    pb.ORDER_STATUS_CANCELLED: "CANCELLED",
}
TRANSACTION_TYPES = {"BUY": pb.TRANSACTION_TYPE_BUY, "SELL": pb.TRANSACTION_TYPE_SELL}
_TYPE_NAME = {v: k for k, v in TRANSACTION_TYPES.items()}


def money(text: str) -> int | float:
    """A decimal string ("1000.00", "1234.50", "70.37") as the JSON number the original sent.

    Whole amounts become ints (1000, never 1000.0). Others become the float whose shortest
    repr is the decimal itself, which holds for every amount of up to 15 significant digits
    (a 2-place value below 10**13); past that the nearest float is sent and a warning logged.
    """
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"order value {text!r} is not a decimal") from None
    if not value.is_finite():
        raise ValueError(f"order value {text!r} is not finite")
    if value == value.to_integral_value():
        return int(value)
    number = float(value)
    if Decimal(repr(number)) != value:
        logger.warning("order value %s is not exact as a JSON number", text)
    return number


def iso_millis(ts: Timestamp) -> str:
    """A Timestamp as ISO 8601 UTC with milliseconds and Z: 2024-01-01T00:00:00.000Z."""
    when = ts.ToDatetime(tzinfo=dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def status_name(status: int) -> str:
    """PENDING, PROCESSING, COMPLETED or CANCELLED."""
    return _STATUS.get(status, "UNKNOWN")


def placed(reply: pb.PlaceOrderResponse) -> dict[str, Any]:
    """The POST /api/order data."""
    return {
        "orderRefNo": reply.order_ref_no,
        "status": SUBMITTED,
        "orderValue": money(reply.order_value),
        "message": reply.message,
    }


def order_status(order: pb.Order) -> dict[str, Any]:
    """The GET /api/order/{ref}/status data: the original five fields, then additions."""
    data: dict[str, Any] = {
        "orderRefNo": order.order_ref_no,
        "status": status_name(order.status),
        "orderValue": money(order.order_value),
        "transactionType": _TYPE_NAME.get(order.transaction_type, "UNKNOWN"),
        "createdOn": iso_millis(order.created_on),
        "fundName": order.fund_name,
        "quantity": order.quantity,
        "updatedOn": iso_millis(order.updated_on),
        "attempts": order.attempts,
    }
    if order.failure_reason:
        data["failureReason"] = order.failure_reason
    if order.confirmation_id:
        data["confirmationId"] = order.confirmation_id
    return data


def update(message: pb.WatchOrderResponse) -> dict[str, Any]:
    """One SSE update: the status data plus progress, event, sequence, detail, recordedOn."""
    data = order_status(message.order)
    data.update(
        {
            "progress": message.progress,
            "event": message.event,
            "sequence": message.sequence,
            "detail": message.detail,
            "recordedOn": iso_millis(message.recorded_on),
        }
    )
    return data


def queue_stats(reply: pb.QueueStatsResponse) -> dict[str, Any]:
    """The GET /api/order/queue/status data."""
    return {
        "waiting": reply.waiting,
        "active": reply.active,
        "completed": reply.completed,
        "failed": reply.failed,
        "waitingByPriority": dict(sorted(reply.waiting_by_priority.items())),
    }
