"""Processing one claimed order: call the third party with retries, record the outcome."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import redis.asyncio as aioredis

from core import claims, keys, store
from core.domain import Event, OrderStatus
from core.models import Order, utcnow
from core.redis_conn import REDIS_DOWN_ERRORS
from core.settings import Settings
from core.updates import Update
from worker import metrics
from worker.recorder import Recorder
from worker.retry import RetryPolicy
from worker.thirdparty import Placement, ThirdPartyClient, ThirdPartyError, ThirdPartyRejected

logger = logging.getLogger(__name__)


class LeaseLost(Exception):
    """The order is no longer ours (the reaper recovered it after our lease expired)."""


class _Stopping(Exception):
    """Raised instead of a retry once the worker is stopping (not retried by tenacity)."""


class Processor:
    """Shared by the orders a worker process has in progress, each in a task of its own."""

    def __init__(
        self,
        settings: Settings,
        worker_id: str,
        client: aioredis.Redis,
        recorder: Recorder,
        third_party: ThirdPartyClient,
        stop_event: asyncio.Event,
        calls: asyncio.Semaphore,
    ) -> None:
        self.settings = settings
        #: Third-party calls in flight, at most WORKER_CONCURRENCY (a backoff holds none).
        self.calls = calls
        self.worker_id = worker_id
        self.redis = client
        self.recorder = recorder
        self.third_party = third_party
        self.stop_event = stop_event
        self.retry_policy = RetryPolicy(
            base_delay_s=settings.retry_base_delay_s,
            max_delay_s=settings.retry_max_delay_s,
            stop_event=stop_event,
        )

    async def process(self, claimed: claims.Claimed) -> None:
        """Call the third party for a claimed order and hand its outcome to the recorder."""
        # LeaseLost: the recorder logged it and forgot the order.
        with contextlib.suppress(LeaseLost):
            await _Order(self, claimed.order).place(claimed.update.order)


class _Order:
    """One held order being processed: its row (the holder's copy) and the steps not yet
    recorded (a failed attempt waits for the retry_scheduled or final step)."""

    def __init__(self, processor: Processor, held: Order) -> None:
        self.p = processor
        self.held = held
        self.ref: str = held.ref
        self.pending: list[store.Step] = []

    async def _write(self, steps: list[store.Step], outcome: str | None = None) -> list[Update]:
        """Record steps and wait until they are written; LeaseLost if the order was taken
        over. The recorder retries while the database is down."""
        change = claims.prepare(self.held, [*self.pending, *steps])
        self.pending = []
        if not await self.p.recorder.write(change, outcome):
            raise LeaseLost(self.ref)
        return change.updates

    def _finish(self, steps: list[store.Step], outcome: str) -> None:
        """Hand the order's last change to the recorder and go on (it logs and counts it)."""
        self.p.recorder.submit(claims.prepare(self.held, [*self.pending, *steps]), outcome)
        self.pending = []

    async def place(self, order: dict[str, Any]) -> None:
        settings = self.p.settings
        attempts_done = int(order["attempts"])
        left = settings.third_party_max_attempts - attempts_done
        if left <= 0:
            self._cancel(f"no third-party attempts left after {attempts_done} calls")
            return
        attempts = self.p.retry_policy.attempts(left)
        number = attempts_done
        try:
            while attempts.next():
                if attempts.due is not None:
                    # tenacity chose to retry: record the failed attempt and the retry, then
                    # wait (a stop cuts the wait short).
                    metrics.RETRIES.inc()
                    step = store.Step(Event.RETRY_SCHEDULED, f"retry in {attempts.due:.2f}s")
                    await self._write([step])
                    await attempts.wait()
                    if self.p.stop_event.is_set():
                        # The stop cut a backoff short: hand back instead of calling again.
                        raise _Stopping
                number = attempts_done + attempts.number
                try:
                    async with self.p.calls:
                        placement = await self.p.third_party.place(order)
                except ThirdPartyError as exc:
                    self.pending = [_attempt_step(number, f"failed: {exc.reason}")]
                    logger.info(
                        "attempt %d failed: %s", number, exc.reason, extra={"ref": self.ref}
                    )
                    attempts.failed(exc)
                else:
                    attempts.succeeded(placement)
        except _Stopping:
            await self._release()
            return
        except ThirdPartyRejected as exc:
            self._cancel(f"third party rejected the order: {exc.reason}")
            return
        except ThirdPartyError as exc:
            if self.p.stop_event.is_set() and number < settings.third_party_max_attempts:
                await self._release()
                return
            self._cancel(f"third party unavailable after {number} attempts: {exc.reason}")
            return
        self._complete(number, placement)

    def _complete(self, number: int, placement: Placement) -> None:
        self._finish(
            [
                _attempt_step(number, f"placed: HTTP {placement.status}"),
                store.Step(
                    Event.COMPLETED,
                    f"confirmation {placement.confirmation_id}",
                    {
                        "status": OrderStatus.COMPLETED.value,
                        "confirmation_id": placement.confirmation_id,
                        "worker_id": None,
                        "lease_expires_at": None,
                    },
                ),
            ],
            "completed",
        )

    def _cancel(self, reason: str) -> None:
        self._finish([store.failed_step(reason)], "cancelled")

    async def _release(self) -> None:
        """Hand an order back on shutdown: PENDING again, at the head of its list."""
        updates = await self._write(
            [
                store.Step(
                    Event.RELEASED,
                    f"worker {self.p.worker_id} shutting down",
                    {
                        "status": OrderStatus.PENDING.value,
                        "worker_id": None,
                        "lease_expires_at": None,
                        "enqueued_at": utcnow(),
                    },
                ),
            ],
            "released",
        )
        priority = keys.PRIORITY_OF_NAME[updates[-1].order["transaction_type"]]
        try:
            await self.p.redis.rpush(keys.queue_key(priority), self.ref)
        except REDIS_DOWN_ERRORS as exc:
            # The order is PENDING in the database: the reaper re-queues it.
            logger.error("could not hand back to the queue: %s", exc, extra={"ref": self.ref})
        logger.info("order handed back", extra={"ref": self.ref})


def _attempt_step(number: int, outcome: str) -> store.Step:
    return store.Step(Event.ATTEMPT, f"attempt {number} {outcome}", {"attempts": number})
