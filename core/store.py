"""Order persistence: creation and every state transition, each with its audit events.

Every write is one transaction that locks the order row, applies one or more steps, bumps
`last_sequence` once per step and appends one OrderEvent per step. Callers publish the returned
updates after the commit.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import peewee as pw
from playhouse.pool import MaxConnectionsExceeded

from core import statements
from core.domain import PROGRESS, Event, OrderStatus, TransactionType, format_money
from core.errors import OrderNotFound, StoreUnavailable
from core.models import IdempotencyKey, Order, OrderEvent, db, utcnow, write_txn
from core.updates import Update

#: Errors that mean "the database cannot be reached or is too busy": worth a retry. A full
#: connection pool (every connection stuck on a dead or locked database) is one of them.
DB_DOWN_ERRORS: tuple[type[Exception], ...] = (
    pw.OperationalError,
    pw.InterfaceError,
    MaxConnectionsExceeded,
)


@dataclass(frozen=True)
class Step:
    """One event to record, with the field changes it makes to the order."""

    event: Event
    detail: str = ""
    changes: dict[str, Any] = field(default_factory=dict)


def failed_step(reason: str) -> Step:
    """CANCELLED by processing (counted as failed), releasing the worker's claim."""
    return Step(
        Event.CANCELLED,
        reason,
        {
            "status": OrderStatus.CANCELLED.value,
            "failure_reason": reason,
            "failed": True,
            "worker_id": None,
            "lease_expires_at": None,
        },
    )


def snapshot(order: Order) -> dict[str, Any]:
    """The order as a JSON-able dict (the `order` of an update)."""
    return _snapshot(order.__data__)


def _snapshot(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "order_ref_no": data["ref"],
        "fund_name": data["fund_name"],
        "transaction_type": data["transaction_type"],
        "quantity": data["quantity"],
        "order_value": format_money(data["order_value"]),
        "status": data["status"],
        "created_on": data["created_on"].isoformat(),
        "updated_on": data["updated_on"].isoformat(),
        "attempts": data["attempts"],
        "failure_reason": data["failure_reason"],
        "confirmation_id": data["confirmation_id"],
    }


def apply_steps(
    order: Order, steps: Sequence[Step], now: dt.datetime
) -> tuple[list[dict[str, Any]], list[Update]]:
    """Apply steps to the order in memory: the event rows to insert and the updates to publish.

    Works on the row's field values (peewee's Model.__data__) directly: every state change of
    every order comes through here, and the field descriptors were a third of its cost. The
    caller writes the changed fields itself (statements.update_order / update_held); the
    model's dirty-field tracking, which only save() reads, is not kept.
    """
    return _apply_steps(order.__data__, steps, now)


def _apply_steps(
    data: dict[str, Any], steps: Sequence[Step], now: dt.datetime
) -> tuple[list[dict[str, Any]], list[Update]]:
    rows: list[dict[str, Any]] = []
    updates: list[Update] = []
    snap: dict[str, Any] | None = None
    snap_json = ""
    for step in steps:
        data.update(step.changes)
        data["last_sequence"] = sequence = data["last_sequence"] + 1
        data["progress"] = progress = max(data["progress"], PROGRESS[step.event])
        data["updated_on"] = now
        current = _snapshot(data)
        if current != snap:  # created + queued: the same order twice, serialised once
            snap, snap_json = current, json.dumps(current, separators=(",", ":"))
        assert snap is not None
        event = step.event.value
        rows.append(
            {
                "order": data.get("id"),
                "sequence": sequence,
                "event": event,
                "status": data["status"],
                "progress": progress,
                "detail": step.detail,
                "created_on": now,
                "snapshot": snap_json,
            }
        )
        updates.append(
            Update(data["ref"], sequence, event, progress, step.detail, now, snap, snap_json)
        )
    return rows, updates


def _for_update(query: pw.Select) -> pw.Select:
    # SQLite has no row locks; its IMMEDIATE transactions already serialise writers.
    if isinstance(db.obj, pw.SqliteDatabase):
        return query
    return query.for_update()


@dataclass(frozen=True)
class NewOrder:
    """A validated order about to be written PENDING."""

    ref: str
    fund_name: str
    transaction_type: TransactionType
    quantity: int
    value: Decimal
    priority: int
    caller: str = ""
    #: (idempotency key, request fingerprint)
    idempotency: tuple[str, str] | None = None


#: A new order row's values before its own: the model's defaults (none is callable).
_NEW_ORDER_ROW: dict[str, Any] = {
    f.name: f.default for f in Order._meta.sorted_fields if f.name != "id"
}


def create_orders(orders: Sequence[NewOrder], queued: bool = True) -> list[list[Update]]:
    """Insert PENDING orders with their `created` and `queued` events, in one transaction.

    queued=False (Redis known to be down) records only `created`: the caller cancels next.
    Raises peewee.IntegrityError when an idempotency key was taken concurrently (nothing is
    written then).
    """
    now = utcnow()
    rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    keys: list[dict[str, Any]] = []
    updates: list[list[Update]] = []
    for new in orders:
        row = _new_order_row(new, now)
        steps = [
            Step(
                Event.CREATED,
                f"{new.transaction_type.value} {new.quantity} x {new.fund_name} = "
                f"{format_money(new.value)}",
            )
        ]
        if queued:
            steps.append(Step(Event.QUEUED, f"priority {new.priority}"))
        order_events, order_updates = _apply_steps(row, steps, now)
        # Events and keys name their order by ref until its id is known.
        events.extend({**event, "ref": new.ref} for event in order_events)
        if new.idempotency is not None:
            key, request_hash = new.idempotency
            keys.append(
                {
                    "ref": new.ref,
                    "caller": new.caller,
                    "key": key,
                    "request_hash": request_hash,
                    "created_on": now,
                }
            )
        rows.append(row)
        updates.append(order_updates)
    _insert_new_orders(rows, events, keys)
    return updates


def _insert_new_orders(
    rows: list[dict[str, Any]], events: list[dict[str, Any]], keys: list[dict[str, Any]]
) -> None:
    if statements.one_statement_placements():
        # PostgreSQL: one round trip, atomic by itself.
        statements.insert_placements(rows, events, keys)
        return
    with write_txn():
        ids = statements.insert_orders(rows)
        for event in events:
            event["order"] = ids[event["ref"]]
        if keys:
            IdempotencyKey.insert_many(
                [
                    {**{k: v for k, v in key.items() if k != "ref"}, "order": ids[key["ref"]]}
                    for key in keys
                ]
            ).execute()
        statements.insert_events(events)


def _new_order_row(new: NewOrder, now: dt.datetime) -> dict[str, Any]:
    return {
        **_NEW_ORDER_ROW,
        "ref": new.ref,
        "fund_name": new.fund_name,
        "transaction_type": new.transaction_type.value,
        "quantity": new.quantity,
        "order_value": new.value,
        "status": OrderStatus.PENDING.value,
        "priority": new.priority,
        "created_on": now,
        "updated_on": now,
        "enqueued_at": now,
        "caller": new.caller,
    }


def create_order(
    *,
    ref: str,
    fund_name: str,
    transaction_type: TransactionType,
    quantity: int,
    value: Decimal,
    priority: int,
    caller: str = "",
    idempotency: tuple[str, str] | None = None,
    queued: bool = True,
) -> list[Update]:
    """Insert one PENDING order (see create_orders)."""
    new = NewOrder(ref, fund_name, transaction_type, quantity, value, priority, caller, idempotency)
    return create_orders([new], queued)[0]


def transition(
    ref: str,
    steps: Sequence[Step],
    *,
    expect: Iterable[OrderStatus],
    owner: str | None = None,
    where: pw.Expression | None = None,
) -> list[Update] | None:
    """Apply steps to the order if its status is in `expect` (and `owner` holds it, and
    `where` holds).

    Returns the updates, or None when the order is not in an expected state: the
    compare-and-set that makes duplicate deliveries and racing reapers no-ops.
    """
    with write_txn():
        return _transition(utcnow(), ref, steps, [s.value for s in expect], owner, where)


def _transition(
    now: dt.datetime,
    ref: str,
    steps: Sequence[Step],
    statuses: list[str],
    owner: str | None,
    where: pw.Expression | None,
) -> list[Update] | None:
    if where is None:
        order = statements.select_order(ref, statuses, owner)
    else:
        query = Order.select().where((Order.ref == ref) & (Order.status.in_(statuses)))
        if owner is not None:
            query = query.where(Order.worker_id == owner)
        order = _for_update(query.where(where)).first()
    if order is None:
        return None
    rows, updates = apply_steps(order, steps, now)
    fields = {name for step in steps for name in step.changes}
    fields |= {"last_sequence", "progress", "updated_on"}
    statements.update_order(order.id, {name: getattr(order, name) for name in fields})
    statements.insert_events(rows)
    return updates


def get_order(ref: str) -> Order:
    """The order with that ref, or OrderNotFound."""
    order = Order.get_or_none(Order.ref == ref)
    if order is None:
        raise OrderNotFound(ref)
    return order


def events_after(ref: str, after_sequence: int = 0) -> list[Update]:
    """The stored updates of an order with sequence > after_sequence, oldest first."""
    query = (
        OrderEvent.select(OrderEvent, Order.ref)
        .join(Order)
        .where((Order.ref == ref) & (OrderEvent.sequence > after_sequence))
        .order_by(OrderEvent.sequence)
    )
    return [
        Update(
            ref,
            row.sequence,
            row.event,
            row.progress,
            row.detail,
            row.created_on,
            json.loads(row.snapshot),
        )
        for row in query
    ]


def latest_updates(refs: Sequence[str]) -> dict[str, Update]:
    """Each order's current state as an update carrying its latest sequence, in one query
    (one consistent read); an unknown ref is absent from the answer."""
    query = (
        OrderEvent.select(OrderEvent, Order)
        .join(Order)
        .where(Order.ref.in_(list(refs)) & (OrderEvent.sequence == Order.last_sequence))
    )
    out: dict[str, Update] = {}
    for row in query:
        order = row.order
        out[order.ref] = Update(
            order.ref,
            order.last_sequence,
            row.event,
            order.progress,
            row.detail,
            row.created_on,
            snapshot(order),
        )
    return out


def store_unavailable(exc: Exception, note: str = "retry later") -> StoreUnavailable:
    """The domain error for a database error that a retry may cure.

    The client gets a plain reason, never the driver's text (which may name hosts); the
    caller logs the original.
    """
    text = str(exc).lower()
    if "locked" in text or "busy" in text or isinstance(exc, MaxConnectionsExceeded):
        return StoreUnavailable(f"busy with other writers; {note}")
    return StoreUnavailable(f"cannot be reached; {note}")
