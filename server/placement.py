"""Placing an order: idempotency, backpressure, the PENDING write and the push onto Redis.

Runs in a worker thread (blocking Peewee and sync Redis); no transport code here.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from decimal import Decimal

import peewee as pw
import redis

from core import keys, store
from core.domain import QUEUE_UNAVAILABLE, Event, OrderStatus, new_order_ref, order_value
from core.errors import FundNotFound, IdempotencyConflict, QueueFull, QueueUnavailable
from core.funds import list_funds
from core.models import IdempotencyKey, Order, db, write_txn
from core.redis_conn import REDIS_DOWN_ERRORS, Reconnect
from core.updates import Update, publish
from server import metrics
from server.validation import PlaceCommand

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Placed:
    """What PlaceOrder answers: the same for a first call and for an idempotent replay."""

    ref: str
    value: Decimal
    replayed: bool = False


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

    def _place(self, cmd: PlaceCommand, caller: str) -> Placed:
        fingerprint = request_hash(cmd)
        if cmd.idempotency_key is not None:
            replay = self._replay(caller, cmd.idempotency_key, fingerprint)
            if replay is not None:
                return replay
        nav = self._nav(cmd.fund_name)
        if nav is None:
            raise FundNotFound(cmd.fund_name)
        queue_up = self._check_depth()
        value = order_value(nav, cmd.quantity)
        ref = new_order_ref()
        priority = keys.PRIORITY_OF[cmd.transaction_type]
        idempotency = None if cmd.idempotency_key is None else (cmd.idempotency_key, fingerprint)
        logger.debug("placing order", extra={"ref": ref})
        try:
            updates = store.create_order(
                ref=ref,
                fund_name=cmd.fund_name,
                transaction_type=cmd.transaction_type,
                quantity=cmd.quantity,
                value=value,
                priority=priority,
                caller=caller,
                idempotency=idempotency,
                queued=queue_up,
            )
        except pw.IntegrityError:
            if cmd.idempotency_key is None:
                raise
            # Another request took the same key first (concurrent first uses); its
            # transaction has committed (the unique index waited for it): answer as it did.
            logger.info("idempotency key taken by a concurrent request", extra={"ref": ref})
            replay = self._replay(caller, cmd.idempotency_key, fingerprint)
            if replay is not None:
                return replay
            # It committed and was then cancelled ("queue unavailable" releases the key).
            raise QueueUnavailable("a concurrent request with this key failed; retry") from None
        logger.info(
            "order accepted",
            extra={
                "ref": ref,
                "type": cmd.transaction_type.value,
                "quantity": cmd.quantity,
                "priority": priority,
            },
        )
        self._dispatch(ref, priority, updates, queue_up)
        metrics.ORDERS_PLACED.labels(cmd.transaction_type.value).inc()
        return Placed(ref, value)

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

    def _dispatch(self, ref: str, priority: int, updates: list[Update], queue_up: bool) -> None:
        """Publish the first updates and push the ref; cancel the order if Redis is down."""
        error: Exception | None = None
        if queue_up:
            try:
                with self.redis.pipeline(transaction=False) as pipe:
                    # Publish before the push, so no worker update can overtake them.
                    publish(pipe, updates)
                    pipe.lpush(keys.queue_key(priority), ref)
                    pipe.execute()
                self._depth += 1  # until the next reading: never under-counts our own pushes
                return
            except REDIS_DOWN_ERRORS as exc:
                self.reconnect.failed(exc)
                error = exc
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
            return
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
