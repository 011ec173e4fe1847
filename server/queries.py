"""Read-side queries the servicer runs in a thread: orders, audit trail, funds, counters."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar, cast

import peewee as pw
import redis

from core import funds, keys, store
from core.domain import OrderStatus
from core.errors import InvalidField, OrderNotFound, QueueUnavailable
from core.models import Order, db
from core.redis_conn import REDIS_DOWN_ERRORS
from core.updates import Update
from server.watch import Backlog

T = TypeVar("T")


def _read(fn: Callable[[], T]) -> T:
    try:
        with db.connection_context():
            return fn()
    except store.DB_DOWN_ERRORS as exc:
        raise store.store_unavailable(exc) from exc


def current_many(refs: Sequence[str]) -> list[Update | OrderNotFound]:
    """Each order's current state (with its latest sequence), or OrderNotFound, in the refs'
    order: one query for all (GetStatus calls share it, server/batching.Batcher)."""
    found = _read(lambda: store.latest_updates(refs))
    return [found.get(ref) or OrderNotFound(ref) for ref in refs]


def history(ref: str, after_sequence: int = 0) -> list[Update]:
    """The order's updates after a sequence, oldest first; OrderNotFound for an unknown ref."""

    def run() -> list[Update]:
        store.get_order(ref)
        return store.events_after(ref, after_sequence)

    return _read(run)


def watch_backlog(ref: str, after_sequence: int) -> Backlog:
    """Every update of the order after a sequence: what a watcher resuming from it is sent
    (a new watcher is sent the current state, current_many)."""

    def run() -> Backlog:
        # The order row first: once it reads terminal, its terminal event is stored too.
        order = store.get_order(ref)
        finished = OrderStatus(order.status).terminal
        if after_sequence > order.last_sequence and not finished:
            raise InvalidField(
                "after_sequence",
                f"is past the order's latest update (sequence {order.last_sequence})",
            )
        return Backlog(store.events_after(ref, after_sequence), finished)

    return _read(run)


@dataclass(frozen=True)
class QueueCounts:
    """The QueueStats numbers."""

    waiting_by_priority: dict[int, int]
    active: int
    completed: int
    failed: int

    @property
    def waiting(self) -> int:
        return sum(self.waiting_by_priority.values())


def queue_counts(client: redis.Redis) -> QueueCounts:
    """List lengths from Redis (QueueUnavailable when down) and outcome counts from the DB."""
    try:
        with client.pipeline(transaction=False) as pipe:
            for key in keys.queue_keys():
                pipe.llen(key)
            lengths = [int(n) for n in pipe.execute()]
    except REDIS_DOWN_ERRORS as exc:
        raise QueueUnavailable(str(exc) or type(exc).__name__) from exc

    def run() -> dict[tuple[str, bool], int]:
        rows = cast(
            Iterable[tuple[str, bool, int]],
            Order.select(Order.status, Order.failed, pw.fn.COUNT(Order.id))
            .group_by(Order.status, Order.failed)
            .tuples(),
        )
        return {(status, bool(failed)): int(n) for status, failed, n in rows}

    counts = _read(run)

    def total(status: OrderStatus, failed: bool | None = None) -> int:
        return sum(n for (s, f), n in counts.items() if s == status.value and failed in (None, f))

    return QueueCounts(
        waiting_by_priority=dict(zip(keys.PRIORITIES, lengths, strict=True)),
        active=total(OrderStatus.PROCESSING),
        completed=total(OrderStatus.COMPLETED),
        failed=total(OrderStatus.CANCELLED, failed=True),
    )


def fund_catalog() -> list[tuple[str, Decimal]]:
    """Every fund, by name."""
    return _read(funds.list_funds)
