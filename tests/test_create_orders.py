"""store.create_orders on SQLite (one transaction) and PostgreSQL (one statement): every row
lands linked to its own order, and a batch with a taken idempotency key writes nothing."""

from __future__ import annotations

import json
from decimal import Decimal

import peewee as pw
import pytest

from core import store
from core.domain import OrderStatus, TransactionType
from core.models import IdempotencyKey, Order, OrderEvent, db


def _new(ref: str, quantity: int, key: str | None = None, caller: str = "") -> store.NewOrder:
    return store.NewOrder(
        ref=ref,
        fund_name="Global Equity Fund",
        transaction_type=TransactionType.SELL if quantity % 2 else TransactionType.BUY,
        quantity=quantity,
        value=Decimal(quantity) * Decimal("10.25"),
        priority=2 if quantity % 2 else 1,
        caller=caller,
        idempotency=None if key is None else (key, f"hash-{key}"),
    )


def test_a_batch_writes_each_order_with_its_own_events_and_key(database: pw.Database) -> None:
    batch = [_new("ORD-A", 1), _new("ORD-B", 2, "key-b", "alice"), _new("ORD-C", 3, "key-c")]
    with db.connection_context():
        updates = store.create_orders(batch)
        orders = {o.ref: o for o in Order.select()}
        assert set(orders) == {"ORD-A", "ORD-B", "ORD-C"}
        for new, order_updates in zip(batch, updates, strict=True):
            order = orders[new.ref]
            assert (order.quantity, order.order_value, order.caller) == (
                new.quantity,
                new.value,
                new.caller,
            )
            assert (order.status, order.last_sequence, order.progress) == (
                OrderStatus.PENDING.value,
                2,
                10,
            )
            trail = OrderEvent.select().where(OrderEvent.order == order.id)
            events = list(trail.order_by(OrderEvent.sequence))
            assert [(e.sequence, e.event) for e in events] == [(1, "created"), (2, "queued")]
            assert [json.loads(e.snapshot)["order_ref_no"] for e in events] == [new.ref] * 2
            assert [u.sequence for u in order_updates] == [1, 2]
        keys = {k.key: (k.order_id, k.caller, k.request_hash) for k in IdempotencyKey.select()}
        assert keys == {
            "key-b": (orders["ORD-B"].id, "alice", "hash-key-b"),
            "key-c": (orders["ORD-C"].id, "", "hash-key-c"),
        }


def test_not_queued_records_created_only(database: pw.Database) -> None:
    with db.connection_context():
        (updates,) = store.create_orders([_new("ORD-D", 4)], queued=False)
        assert [u.event for u in updates] == ["created"]
        assert OrderEvent.select().count() == 1
        assert Order.get(Order.ref == "ORD-D").last_sequence == 1


def test_a_taken_key_fails_the_whole_batch_and_writes_nothing(database: pw.Database) -> None:
    with db.connection_context():
        store.create_orders([_new("ORD-E", 5, "taken")])
        with pytest.raises(pw.IntegrityError):
            store.create_orders([_new("ORD-F", 6), _new("ORD-G", 7, "taken"), _new("ORD-H", 8)])
        assert sorted(o.ref for o in Order.select()) == ["ORD-E"]
        assert OrderEvent.select().count() == 2
        assert IdempotencyKey.select().count() == 1
        # The connection is usable afterwards (no transaction left aborted).
        store.create_orders([_new("ORD-I", 9)])
        assert Order.select().count() == 2


def test_the_statement_cache_stays_bounded(database: pw.Database) -> None:
    from core import statements

    shapes = statements.CACHE_LIMIT + 10
    try:
        for size in range(1, shapes + 1):
            text = statements._sql(("probe", size), lambda size=size: f"probe {size}")
            assert text == f"probe {size}"
        assert len(statements._cache) == statements.CACHE_LIMIT
        # The newest shapes are kept; the oldest were dropped and are built again if asked for.
        assert statements._sql(("probe", shapes), lambda: "rebuilt") == f"probe {shapes}"
        assert statements._sql(("probe", 1), lambda: "rebuilt") == "rebuilt"
    finally:
        for key in [k for k in statements._cache if k[0] == "probe"]:
            del statements._cache[key]
