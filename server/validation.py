"""Request validation on plain values; raises InvalidField naming the proto field."""

from __future__ import annotations

from dataclasses import dataclass

from core.domain import (
    MAX_FUND_NAME,
    MAX_IDEMPOTENCY_KEY,
    MAX_QUANTITY,
    MIN_QUANTITY,
    TransactionType,
    is_order_ref,
)
from core.errors import InvalidField

_TYPES = {1: TransactionType.BUY, 2: TransactionType.SELL}


@dataclass(frozen=True)
class PlaceCommand:
    """A validated PlaceOrder request."""

    fund_name: str
    transaction_type: TransactionType
    quantity: int
    idempotency_key: str | None


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or 127 <= ord(c) < 160 or c in "\u2028\u2029" for c in text)


def validate_fund_name(name: str) -> str:
    if not name:
        raise InvalidField("fund_name", "must not be empty")
    if len(name) > MAX_FUND_NAME:
        raise InvalidField("fund_name", f"must be at most {MAX_FUND_NAME} characters")
    if _has_control(name):
        raise InvalidField("fund_name", "must not contain control characters")
    if name != name.strip():
        raise InvalidField("fund_name", "must not start or end with white space")
    return name


def validate_transaction_type(value: int) -> TransactionType:
    if value not in _TYPES:
        if value == 0:
            raise InvalidField(
                "transaction_type", "must be set to TRANSACTION_TYPE_BUY or TRANSACTION_TYPE_SELL"
            )
        raise InvalidField(
            "transaction_type",
            f"unknown value {value}; must be TRANSACTION_TYPE_BUY or TRANSACTION_TYPE_SELL",
        )
    return _TYPES[value]


def validate_quantity(value: int) -> int:
    if not MIN_QUANTITY <= value <= MAX_QUANTITY:
        raise InvalidField(
            "quantity", f"must be from {MIN_QUANTITY} to {MAX_QUANTITY:,}, got {value}"
        )
    return value


def validate_idempotency_key(key: str | None) -> str | None:
    if key is None or key == "":
        return None
    if len(key) > MAX_IDEMPOTENCY_KEY:
        raise InvalidField("idempotency_key", f"must be at most {MAX_IDEMPOTENCY_KEY} characters")
    if any(not 32 <= ord(c) <= 126 for c in key):
        raise InvalidField("idempotency_key", "must be printable ASCII")
    return key


def validate_place(
    fund_name: str, transaction_type: int, quantity: int, idempotency_key: str | None
) -> PlaceCommand:
    """Check every field of a PlaceOrder request, in proto field order."""
    return PlaceCommand(
        fund_name=validate_fund_name(fund_name),
        transaction_type=validate_transaction_type(transaction_type),
        quantity=validate_quantity(quantity),
        idempotency_key=validate_idempotency_key(idempotency_key),
    )


def validate_ref(ref: str) -> str:
    """An order ref: ORD followed by at least 10 of [A-Z0-9]."""
    if not ref:
        raise InvalidField("order_ref_no", "must not be empty")
    if not is_order_ref(ref):
        raise InvalidField(
            "order_ref_no", "must be ORD followed by 10 to 61 characters of A-Z, 0-9"
        )
    return ref


def validate_after_sequence(value: int | None) -> int | None:
    if value is not None and value < 0:
        raise InvalidField("after_sequence", "must not be negative")
    return value
