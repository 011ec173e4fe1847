"""Pure domain rules: refs, order values, validation, timestamps."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from core.domain import format_money, is_order_ref, new_order_ref, order_value
from core.errors import InvalidField
from server.convert import timestamp
from server.validation import validate_place


def test_refs_are_well_formed_unique_and_not_sequential() -> None:
    refs = [new_order_ref() for _ in range(2000)]
    assert len(set(refs)) == len(refs)
    assert all(is_order_ref(r) for r in refs)
    assert sorted(refs) != refs


@pytest.mark.parametrize(
    "nav,qty,expected",
    [
        ("10.00", 100, "1000.00"),
        ("0.005", 1, "0.01"),
        ("0.015", 1, "0.02"),
        ("23.4567", 5, "117.28"),
        ("1.005", 1, "1.01"),
        ("33.333", 3, "100.00"),
    ],
)
def test_order_value_half_up(nav: str, qty: int, expected: str) -> None:
    assert format_money(order_value(Decimal(nav), qty)) == expected


def test_validation_names_the_field() -> None:
    with pytest.raises(InvalidField) as err:
        validate_place("Fund", 1, 0, None)
    assert err.value.field == "quantity"
    assert validate_place("Fund", 2, 5, "").idempotency_key is None


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2026, 12, 4, 8, 0, 1, 654321),
        dt.datetime(1970, 1, 1),
        dt.datetime(1969, 12, 31, 23, 59, 59, 500000),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
        dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    ],
)
def test_timestamps_match_protobufs_own_conversion(value: dt.datetime) -> None:
    expected = Timestamp()
    expected.FromDatetime(value if value.tzinfo else value.replace(tzinfo=dt.UTC))
    assert timestamp(value) == expected
