"""Helpers for the reliability tests: place orders, read their fate, check the third party."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
import pytest
import redis
from orders.v1 import orders_pb2 as pb

from core import keys, store
from core.domain import Event, OrderStatus, TransactionType, new_order_ref, order_value
from core.funds import list_funds
from core.models import Order, OrderEvent, close_db, db, init_db, utcnow
from tests.harness import Stack, wait_for

FUND = "Global Equity Fund"
BUY, SELL = pb.TRANSACTION_TYPE_BUY, pb.TRANSACTION_TYPE_SELL
TERMINAL = (OrderStatus.COMPLETED.value, OrderStatus.CANCELLED.value)


@pytest.fixture(name="sqlite_db")
def sqlite_db_fixture(sqlite_url: str) -> Iterator[None]:
    """The test's own connection to the SQLite file a stack uses (import it to use it)."""
    init_db(sqlite_url)
    try:
        yield
    finally:
        close_db()


def request(quantity: int = 1, kind: int = BUY, key: str | None = None) -> pb.PlaceOrderRequest:
    req = pb.PlaceOrderRequest(fund_name=FUND, transaction_type=kind, quantity=quantity)
    if key is not None:
        req.idempotency_key = key
    return req


def place_many(stack: Stack, count: int, threads: int = 8) -> list[str]:
    """Place count orders (BUY and SELL mixed) from several client threads; all must be OK."""

    def one(i: int) -> str:
        reply = stack.stub.PlaceOrder(request(i + 1, BUY if i % 3 else SELL), timeout=30)
        return str(reply.order_ref_no)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(count)))


def statuses() -> dict[str, str]:
    """ref -> status of every order in the test's database."""
    # A connection of its own each time: the pool drops one a database restart killed.
    with db.connection_context():
        return {o.ref: o.status for o in Order.select(Order.ref, Order.status)}


def wait_all_terminal(timeout: float, what: str = "every order to be terminal") -> dict[str, str]:
    def done() -> dict[str, str] | None:
        now = statuses()
        return now if now and all(s in TERMINAL for s in now.values()) else None

    try:
        return wait_for(done, timeout, what, interval=0.2)
    except AssertionError:
        left = {r: s for r, s in statuses().items() if s not in TERMINAL}
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what}; left: {left}"
        ) from None


def events_of(ref: str) -> list[str]:
    with db.connection_context():
        return [
            e.event
            for e in OrderEvent.select(OrderEvent.event)
            .join(Order)
            .where(Order.ref == ref)
            .order_by(OrderEvent.sequence)
        ]


def assert_one_placement_each(stack: Stack) -> dict[str, str]:
    """Every COMPLETED order placed exactly once at the third party, and nothing else placed.

    An order cancelled after a call timed out may still have been placed over there (the
    third party cannot be asked); the tests that check this keep timeouts out of the way.
    """
    final = statuses()
    placements = stack.fundhouse_get("/_admin/stats")["placements"]
    completed = {r for r, s in final.items() if s == OrderStatus.COMPLETED.value}
    assert set(placements) == completed, (
        f"placed but not completed: {set(placements) - completed}; "
        f"completed but not placed: {completed - set(placements)}"
    )
    assert all(n == 1 for n in placements.values())
    confirmations = [o.confirmation_id for o in Order.select().where(Order.status == "COMPLETED")]
    assert len(set(confirmations)) == len(confirmations), "a confirmation recorded twice"
    return final


def queue_entries(client: redis.Redis) -> list[str]:
    """Every ref waiting on any list (duplicates kept)."""
    return [ref for key in keys.queue_keys() for ref in client.lrange(key, 0, -1)]


def make_order(
    *,
    quantity: int = 1,
    kind: TransactionType = TransactionType.BUY,
    status: OrderStatus = OrderStatus.PENDING,
    worker_id: str | None = None,
    lease_age_s: float = 0.0,
    recoveries: int = 0,
    attempts: int = 0,
    pending_age_s: float = 0.0,
) -> str:
    """Write an order straight into the database (no push), in the state a test needs."""
    ref = new_order_ref()
    with db.connection_context():
        nav = dict(list_funds()).get(FUND)
        assert nav is not None, "the fund catalog is loaded by starting a server first"
        store.create_order(
            ref=ref,
            fund_name=FUND,
            transaction_type=kind,
            quantity=quantity,
            value=order_value(nav, quantity),
            priority=keys.PRIORITY_OF[kind],
        )
        changes: dict[str, object] = {
            "recoveries": recoveries,
            "attempts": attempts,
            "enqueued_at": utcnow() - dt.timedelta(seconds=pending_age_s),
        }
        if status is OrderStatus.PROCESSING:
            changes |= {
                "status": status.value,
                "worker_id": worker_id or "dead-worker",
                "lease_expires_at": utcnow() - dt.timedelta(seconds=lease_age_s),
            }
            store.transition(
                ref, [store.Step(Event.CLAIMED, "test", changes)], expect=[OrderStatus.PENDING]
            )
        else:
            Order.update({getattr(Order, k): v for k, v in changes.items()}).where(
                Order.ref == ref
            ).execute()
    return ref


@dataclass
class Flow:
    """Places orders one after another in a thread until stopped, recording every answer."""

    stack: Stack
    ok: list[str] = field(default_factory=list)
    failures: list[tuple[grpc.StatusCode, str, float]] = field(default_factory=list)
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> Flow:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        i = 0
        while not self.stop_event.is_set():
            i += 1
            started = time.monotonic()
            try:
                reply = self.stack.stub.PlaceOrder(request(i, BUY if i % 2 else SELL), timeout=10)
                self.ok.append(reply.order_ref_no)
            except grpc.RpcError as err:
                self.failures.append((err.code(), err.details() or "", time.monotonic() - started))
            self.stop_event.wait(0.02)

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(15)
