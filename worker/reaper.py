"""The reaper: puts back on their lists the orders a dead worker held or a lost push dropped.

Runs in a thread of every worker. Each sweep, bounded to SWEEP_LIMIT orders of each kind:

- PROCESSING with an expired lease (its worker died, or lost the database for longer than the
  lease) -> PENDING with a `recovered` event, pushed on its list again; past MAX_RECOVERIES
  recoveries -> CANCELLED instead (a poison order that kills its worker must not loop);
- PENDING for longer than PENDING_GRACE_SECONDS since it was last pushed, and not on its list
  (the server died between commit and LPUSH, or Redis restarted without its data) -> a
  `requeued` event, pushed again.

Every change is a compare-and-set on the row (status plus the values the sweep read), so two
reapers that find the same order make one change between them; a ref pushed twice is harmless
because only one claim (PENDING -> PROCESSING) can win.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
from dataclasses import dataclass

import peewee as pw
import redis

from core import keys, store
from core.domain import Event, OrderStatus
from core.models import Order, db, utcnow
from core.redis_conn import REDIS_DOWN_ERRORS, Reconnect
from core.settings import Settings
from core.updates import Update, publish
from worker import metrics

logger = logging.getLogger(__name__)

#: At most this many orders of each kind are looked at per sweep, so one sweep stays short
#: even after Redis lost a long queue; the rest wait for the next sweeps.
SWEEP_LIMIT = 200


@dataclass
class SweepResult:
    """What one sweep did."""

    recovered: int = 0
    cancelled: int = 0
    requeued: int = 0


class Reaper:
    """One per worker process; `held` is the set of refs this process is working on."""

    def __init__(
        self,
        settings: Settings,
        worker_id: str,
        client: redis.Redis,
        held: set[str],
        held_lock: threading.Lock,
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.redis = client
        self.held = held
        self.held_lock = held_lock
        self.reconnect = Reconnect("reaper", initial_s=settings.reaper_interval_s, cap_s=30.0)
        #: Where the next scan of stale PENDING orders starts (enqueued_at, id).
        self.cursor: tuple[dt.datetime | None, int] | None = None

    def run(self, stop: threading.Event) -> None:
        """Sweep every REAPER_INTERVAL_S (with jitter, so reapers spread out) until stop."""
        interval = self.settings.reaper_interval_s
        while not stop.is_set():
            try:
                self.sweep()
            except store.DB_DOWN_ERRORS as exc:
                logger.error("reaper: database unavailable, next sweep later: %s", exc)
            except REDIS_DOWN_ERRORS as exc:
                self.reconnect.failed(exc)
            except Exception:
                logger.exception("reaper: unexpected error in sweep")
            stop.wait(interval * random.uniform(0.8, 1.2))

    def sweep(self) -> SweepResult:
        """One pass over expired leases and stale PENDING orders."""
        result = SweepResult()
        with db.connection_context():
            self._recover_expired(result)
            if self.reconnect.ready():
                self._requeue_lost(result)
                self.reconnect.succeeded()
        for action in ("recovered", "cancelled", "requeued"):
            metrics.REAPER_ACTIONS.labels(action).inc(getattr(result, action))
        if result.recovered or result.cancelled or result.requeued:
            logger.info(
                "reaper sweep: %d recovered, %d cancelled, %d requeued",
                result.recovered,
                result.cancelled,
                result.requeued,
                extra={"worker": self.worker_id},
            )
        return result

    # -- expired leases ------------------------------------------------------------------

    def _recover_expired(self, result: SweepResult) -> None:
        now = utcnow()
        with self.held_lock:
            mine = set(self.held)
        rows = (
            Order.select(Order.ref, Order.worker_id, Order.recoveries, Order.priority)
            .where((Order.status == OrderStatus.PROCESSING.value) & (Order.lease_expires_at < now))
            .order_by(Order.lease_expires_at)
            .limit(SWEEP_LIMIT)
        )
        for row in list(rows):
            if row.ref in mine:
                # Ours and alive: this process is still working on it (heartbeats lag).
                continue
            guard = (
                (Order.lease_expires_at < now)
                & (Order.worker_id == row.worker_id)
                & (Order.recoveries == row.recoveries)
            )
            if row.recoveries >= self.settings.max_recoveries:
                reason = (
                    f"recovered {row.recoveries} times from dead workers "
                    f"(MAX_RECOVERIES={self.settings.max_recoveries}); last held by "
                    f"{row.worker_id}"
                )
                if self._cancel(row.ref, reason, guard):
                    result.cancelled += 1
                continue
            updates = store.transition(
                row.ref,
                [
                    store.Step(
                        Event.RECOVERED,
                        f"lease of {row.worker_id} expired; recovery {row.recoveries + 1}",
                        {
                            "status": OrderStatus.PENDING.value,
                            "worker_id": None,
                            "lease_expires_at": None,
                            "recoveries": row.recoveries + 1,
                            "enqueued_at": utcnow(),
                        },
                    )
                ],
                expect=[OrderStatus.PROCESSING],
                where=guard,
            )
            if updates is None:
                continue  # renewed, finished, or another reaper was first
            logger.warning(
                "recovered order from expired lease",
                extra={"ref": row.ref, "dead_worker": row.worker_id},
            )
            result.recovered += 1
            self._push(row.ref, row.priority, updates)

    def _cancel(self, ref: str, reason: str, guard: pw.Expression) -> bool:
        updates = store.transition(
            ref,
            [store.failed_step(reason)],
            expect=[OrderStatus.PROCESSING],
            where=guard,
        )
        if updates is None:
            return False
        logger.error("order cancelled: %s", reason, extra={"ref": ref})
        self._publish(updates)
        return True

    # -- PENDING orders missing from their list ----------------------------------------

    def _requeue_lost(self, result: SweepResult) -> None:
        cutoff = utcnow() - dt.timedelta(seconds=self.settings.pending_grace_s)
        # Every path to PENDING (create, release, recover, requeue) sets enqueued_at.
        stale = (Order.status == OrderStatus.PENDING.value) & (Order.enqueued_at < cutoff)
        query = Order.select(Order.id, Order.ref, Order.priority, Order.enqueued_at).where(stale)
        if self.cursor is not None:
            at, last_id = self.cursor
            # Keyset paging: orders still waiting on a long list are not checked every sweep.
            query = query.where(
                (Order.enqueued_at > at) | ((Order.enqueued_at == at) & (Order.id > last_id))
            )
        rows = list(query.order_by(Order.enqueued_at, Order.id).limit(SWEEP_LIMIT))
        self.cursor = (rows[-1].enqueued_at, rows[-1].id) if len(rows) == SWEEP_LIMIT else None
        if not rows:
            return
        with self.redis.pipeline(transaction=False) as pipe:
            for row in rows:
                pipe.lpos(keys.queue_key(row.priority), row.ref)
            positions = pipe.execute()
        for row, position in zip(rows, positions, strict=True):
            if position is not None:
                continue
            updates = store.transition(
                row.ref,
                [
                    store.Step(
                        Event.REQUEUED,
                        f"pending since {row.enqueued_at} and not on its queue; pushed again",
                        {"enqueued_at": utcnow()},
                    )
                ],
                expect=[OrderStatus.PENDING],
                where=Order.enqueued_at == row.enqueued_at,
            )
            if updates is None:
                continue  # claimed, or another reaper was first
            logger.warning("requeued order missing from its queue", extra={"ref": row.ref})
            result.requeued += 1
            self._push(row.ref, row.priority, updates)

    # -- Redis -------------------------------------------------------------------------

    def _publish(self, updates: list[Update]) -> None:
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                publish(pipe, updates)
                pipe.execute()
        except REDIS_DOWN_ERRORS as exc:
            logger.warning("could not publish updates: %s", exc, extra={"ref": updates[0].ref})

    def _push(self, ref: str, priority: int, updates: list[Update]) -> None:
        """Publish, then push to the head of the list: the order has waited already."""
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                publish(pipe, updates)
                pipe.rpush(keys.queue_key(priority), ref)
                pipe.execute()
        except REDIS_DOWN_ERRORS as exc:
            # PENDING with a fresh enqueued_at: a later sweep finds it missing and pushes it.
            logger.error("could not push recovered order: %s", exc, extra={"ref": ref})
