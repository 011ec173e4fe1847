"""Read-side queries the servicer runs in a thread: orders, audit trail, funds, counters."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TypeVar

from core import funds, store
from core.models import db
from core.updates import Update

T = TypeVar("T")


def _read(fn: Callable[[], T]) -> T:
    try:
        with db.connection_context():
            return fn()
    except store.DB_DOWN_ERRORS as exc:
        raise store.store_unavailable(exc) from exc


def current(ref: str) -> Update:
    """The order's current state (with its latest sequence), or OrderNotFound."""
    return _read(lambda: store.latest_update(ref))


def history(ref: str, after_sequence: int = 0) -> list[Update]:
    """The order's updates after a sequence, oldest first; OrderNotFound for an unknown ref."""

    def run() -> list[Update]:
        store.get_order(ref)
        return store.events_after(ref, after_sequence)

    return _read(run)


def fund_catalog() -> list[tuple[str, Decimal]]:
    """Every fund, by name."""
    return _read(funds.list_funds)
