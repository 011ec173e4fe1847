"""Placing an order: idempotency, backpressure, the PENDING write and the push onto Redis.

Runs in a worker thread (blocking Peewee and sync Redis); no transport code here.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

import peewee as pw
import redis

from core import keys, store
from core.domain import QUEUE_UNAVAILABLE, Event, OrderStatus, new_order_ref, order_value
from core.errors import (
    FundNotFound,
    IdempotencyConflict,
    OrderError,
    QueueFull,
    QueueUnavailable,
)
from core.funds import list_funds
from core.models import IdempotencyKey, Order, db, write_txn
from core.redis_conn import REDIS_DOWN_ERRORS, Reconnect
from server import metrics
from server.validation import PlaceCommand

logger = logging.getLogger(__name__)


def outcome(fn: Callable[[], Placed]) -> Placed | OrderError:
    """fn's result, or the domain error it raised (a database error becomes StoreUnavailable)."""
    try:
        return fn()
    except OrderError as exc:
        return exc
    except store.DB_DOWN_ERRORS as exc:
        logger.error("database error placing order: %s", exc)
        return store.store_unavailable(exc, "retry later")


def accepted(new: store.NewOrder) -> None:
    """Log an order written PENDING."""
    logger.info(
        "order accepted",
        extra={
            "ref": new.ref,
            "type": new.transaction_type.value,
            "quantity": new.quantity,
            "priority": new.priority,
        },
    )


@dataclass(frozen=True)
class Placed:
    """What PlaceOrder answers: the same for a first call and for an idempotent replay."""

    ref: str
    value: Decimal
    replayed: bool = False


@dataclass(frozen=True)
class Prepared:
    """A checked order ready to be written: the request, the row to write, Redis reachable."""

    cmd: PlaceCommand
    new: store.NewOrder
    queue_up: bool


def request_hash(cmd: PlaceCommand) -> str:
    """Fingerprint of the request body an idempotency key is bound to."""
    body = f"{cmd.fund_name}\x00{cmd.transaction_type.value}\x00{cmd.quantity}"
    return hashlib.sha256(body.encode()).hexdigest()


#: How long a fund catalog read or a queue depth reading is reused. The catalog changes only
#: when a server starts with another FUNDS_FILE; the depth bound is a guard, not a count.
CATALOG_TTL_S = 5.0
DEPTH_TTL_S = 0.05


class OrderPlacer:
    """Writes orders and dispatches them; one instance per server process, thread-safe."""

    def __init__(self, client: redis.Redis, max_queue_depth: int) -> None:
        self.redis = client
        self.max_queue_depth = max_queue_depth
        self._catalog: dict[str, Decimal] = {}
        self._catalog_read = -CATALOG_TTL_S
        self._depth = 0
        self._depth_read = -DEPTH_TTL_S
        # While Redis is down, only one request per backoff delay tries it; the others are
        # answered UNAVAILABLE at once instead of each waiting out a timeout.
        self.reconnect = Reconnect("placement", initial_s=0.25, cap_s=2.0)

    def place(self, cmd: PlaceCommand, caller: str = "") -> Placed:
        """Place the order or replay the one this caller's idempotency key names."""
        try:
            with db.connection_context():
                return self._place(cmd, caller)
        except store.DB_DOWN_ERRORS as exc:
            logger.error("database error placing order: %s", exc)
            raise store.store_unavailable(exc, "nothing was written; retry later") from exc

    def prepare(self, cmd: PlaceCommand, caller: str) -> Placed | Prepared:
        """Replay a known idempotency key, or check the order and give it a ref and value.

        Raises FundNotFound, IdempotencyConflict or QueueFull. Needs a DB connection.
        """
        idempotency = None
        if cmd.idempotency_key is not None:
            idempotency = (cmd.idempotency_key, request_hash(cmd))
            replay = self._replay(caller, *idempotency)
            if replay is not None:
                return replay
        nav = self._nav(cmd.fund_name)
        if nav is None:
            raise FundNotFound(cmd.fund_name)
        queue_up = self._check_depth()
        new = store.NewOrder(
            ref=new_order_ref(),
            fund_name=cmd.fund_name,
            transaction_type=cmd.transaction_type,
            quantity=cmd.quantity,
            value=order_value(nav, cmd.quantity),
            priority=keys.PRIORITY_OF[cmd.transaction_type],
            caller=caller,
            idempotency=idempotency,
        )
        logger.debug("placing order", extra={"ref": new.ref})
        return Prepared(cmd, new, queue_up)

    def _place(self, cmd: PlaceCommand, caller: str) -> Placed:
        prepared = self.prepare(cmd, caller)
        if isinstance(prepared, Placed):
            return prepared
        new = prepared.new
        try:
            store.create_orders([new], queued=prepared.queue_up)
        except pw.IntegrityError:
            if new.idempotency is None:
                raise
            return self.replay_after_race(new)
        accepted(new)
        if not prepared.queue_up:
            return self.push_failed(new, None)
        (outcome,) = self.push([new])
        if isinstance(outcome, OrderError):
            raise outcome
        return outcome

    def replay_after_race(self, new: store.NewOrder) -> Placed:
        """The answer for an order whose idempotency key a concurrent request took first."""
        assert new.idempotency is not None
        key, fingerprint = new.idempotency
        # Its transaction has committed (the unique index waited for it): answer as it did.
        logger.info("idempotency key taken by a concurrent request", extra={"ref": new.ref})
        replay = self._replay(new.caller, key, fingerprint)
        if replay is not None:
            return replay
        # It committed and was then cancelled ("queue unavailable" releases the key).
        raise QueueUnavailable("a concurrent request with this key failed; retry")

    def push(self, entries: Sequence[store.NewOrder]) -> list[Placed | OrderError]:
        """Push the refs of committed orders: one LPUSH per priority, in one pipeline.

        Their `created` and `queued` updates are not published: nobody can be watching yet
        (the ref reaches the client only in this call's answer, and a replayed answer comes
        after the commit), and a watch starts from the stored trail, which holds them.
        Redis down: every order is cancelled (push_failed), its outcome QueueUnavailable.
        """
        by_priority: dict[int, list[str]] = {}
        for new in entries:
            by_priority.setdefault(new.priority, []).append(new.ref)
        try:
            # LPUSH k r1 r2 is LPUSH k r1 then LPUSH k r2: r1 is popped first.
            if len(by_priority) == 1:
                ((priority, refs),) = by_priority.items()
                self.redis.lpush(keys.queue_key(priority), *refs)
            else:
                with self.redis.pipeline(transaction=False) as pipe:
                    for priority, refs in by_priority.items():
                        pipe.lpush(keys.queue_key(priority), *refs)
                    pipe.execute()
        except REDIS_DOWN_ERRORS as exc:
            self.reconnect.failed(exc)
            error: Exception = exc
            return [outcome(functools.partial(self.push_failed, new, error)) for new in entries]
        self._depth += len(entries)  # until the next reading: never under-counts our pushes
        by_type = collections.Counter(new.transaction_type.value for new in entries)
        for transaction_type, count in by_type.items():
            metrics.placed(transaction_type, count)
        return [Placed(new.ref, new.value) for new in entries]

    def _replay(self, caller: str, key: str, fingerprint: str) -> Placed | None:
        row = (
            IdempotencyKey.select(IdempotencyKey, Order)
            .join(Order)
            .where((IdempotencyKey.caller == caller) & (IdempotencyKey.key == key))
            .get_or_none()
        )
        if row is None:
            return None
        if row.request_hash != fingerprint:
            raise IdempotencyConflict(key)
        logger.info("idempotent replay", extra={"ref": row.order.ref})
        return Placed(row.order.ref, row.order.order_value, replayed=True)

    def _nav(self, name: str) -> Decimal | None:
        now = time.monotonic()
        if now - self._catalog_read > CATALOG_TTL_S:
            self._catalog = dict(list_funds())
            self._catalog_read = now
        return self._catalog.get(name)

    def _check_depth(self) -> bool:
        """Raise QueueFull past MAX_QUEUE_DEPTH; False when Redis cannot be reached."""
        if not self.reconnect.ready():
            return False
        now = time.monotonic()
        if now - self._depth_read < DEPTH_TTL_S:
            if self._depth >= self.max_queue_depth:
                raise QueueFull(self._depth, self.max_queue_depth)
            return True
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for key in keys.queue_keys():
                    pipe.llen(key)
                depth = sum(pipe.execute())
        except REDIS_DOWN_ERRORS as exc:
            self.reconnect.failed(exc)
            return False
        self.reconnect.succeeded()
        self._depth, self._depth_read = depth, now
        if depth >= self.max_queue_depth:
            raise QueueFull(depth, self.max_queue_depth)
        return True

    def push_failed(self, new: store.NewOrder, error: Exception | None) -> Placed:
        """Redis is down for a committed order: cancel it and raise QueueUnavailable.

        Returns normally only when a worker claimed it (the push went through after all).
        """
        ref = new.ref
        logger.error(
            "queue unavailable, cancelling order: %s",
            error or "redis unreachable",
            extra={"ref": ref},
        )
        try:
            cancelled = self._cancel_unqueued(ref)
        except store.DB_DOWN_ERRORS as exc:
            # Both down: the order stays PENDING and the reaper dispatches it later. Say so,
            # so that the client does not place it a second time.
            logger.error("could not cancel unqueued order: %s", exc, extra={"ref": ref})
            raise QueueUnavailable(
                f"order {ref} was saved but not queued; it will be dispatched when the queue "
                "is back, do not place it again"
            ) from exc
        if not cancelled:
            # A worker claimed it: the push went through although its reply was lost.
            logger.warning("push reply lost but order was claimed", extra={"ref": ref})
            return Placed(ref, new.value)
        raise QueueUnavailable(f"order {ref} was cancelled; retry later")

    def _cancel_unqueued(self, ref: str) -> bool:
        # The key is released: it was never bound to an accepted order, so a retry with the
        # same key places the order anew instead of replaying a failure.
        with write_txn():
            cancelled = store.transition(
                ref,
                [
                    store.Step(
                        Event.CANCELLED,
                        QUEUE_UNAVAILABLE,
                        {
                            "status": OrderStatus.CANCELLED.value,
                            "failure_reason": QUEUE_UNAVAILABLE,
                        },
                    )
                ],
                expect=[OrderStatus.PENDING],
            )
            if cancelled is None:
                return False
            order = Order.get(Order.ref == ref)
            IdempotencyKey.delete().where(IdempotencyKey.order == order.id).execute()
        return True
