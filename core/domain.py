"""Domain vocabulary: statuses, transaction types, events, refs and order values."""

from __future__ import annotations

import base64
import secrets
from decimal import ROUND_HALF_UP, Decimal
from enum import Enum


class TransactionType(str, Enum):
    """What the order does with the fund."""

    BUY = "BUY"
    SELL = "SELL"


class OrderStatus(str, Enum):
    """The order state machine: PENDING -> PROCESSING -> COMPLETED | CANCELLED.

    PROCESSING goes back to PENDING only when a worker hands an order back (shutdown) or
    the reaper recovers it from a dead worker; COMPLETED and CANCELLED are terminal.
    """

    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (OrderStatus.COMPLETED, OrderStatus.CANCELLED)


class Event(str, Enum):
    """Names of the updates (audit events) an order goes through."""

    CREATED = "created"
    QUEUED = "queued"
    CLAIMED = "claimed"
    ATTEMPT = "attempt"
    RETRY_SCHEDULED = "retry_scheduled"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    RECOVERED = "recovered"
    REQUEUED = "requeued"
    RELEASED = "released"


#: Progress reached by each event; the recorded progress is the running maximum, so it
#: never goes down (a recovered order keeps the progress it had).
PROGRESS: dict[Event, int] = {
    Event.CREATED: 0,
    Event.QUEUED: 10,
    Event.CLAIMED: 30,
    Event.ATTEMPT: 50,
    Event.RETRY_SCHEDULED: 50,
    Event.COMPLETED: 100,
    Event.CANCELLED: 100,
    Event.RECOVERED: 0,
    Event.REQUEUED: 0,
    Event.RELEASED: 0,
}

REF_PREFIX = "ORD"
_REF_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
REF_MAX_LENGTH = 64

MIN_QUANTITY = 1
MAX_QUANTITY = 10_000_000
MAX_FUND_NAME = 200
MAX_IDEMPOTENCY_KEY = 255

QUEUE_UNAVAILABLE = "queue unavailable"
ACCEPTED_MESSAGE = "Order has been queued for processing"

_CENT = Decimal("0.01")


def new_order_ref() -> str:
    """ORD + 16 random characters of A-Z2-7 (80 bits, base32): unique, never sequential."""
    return REF_PREFIX + base64.b32encode(secrets.token_bytes(10)).decode()


def is_order_ref(value: str) -> bool:
    """True when value has the shape of an order ref (ORD + at least 10 of [A-Z0-9])."""
    body = value[len(REF_PREFIX) :]
    return (
        value.startswith(REF_PREFIX)
        and 10 <= len(body) <= REF_MAX_LENGTH - len(REF_PREFIX)
        and all(c in _REF_ALPHABET for c in body)
    )


def order_value(nav: Decimal, quantity: int) -> Decimal:
    """NAV x quantity, rounded half-up to 2 places, in Decimal arithmetic only."""
    return (nav * quantity).quantize(_CENT, rounding=ROUND_HALF_UP)


def format_money(value: Decimal) -> str:
    """A decimal with exactly two places, no exponent: "1000.00"."""
    return f"{value.quantize(_CENT, rounding=ROUND_HALF_UP):f}"
