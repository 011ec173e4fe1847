"""Processing one order: claim (CAS), call the third party with retries, record the outcome."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any

import redis
from tenacity import RetryCallState

from core import keys, store
from core.domain import Event, OrderStatus
from core.models import utcnow
from core.redis_conn import REDIS_DOWN_ERRORS
from core.settings import Settings
from core.updates import Update
from worker import metrics
from worker.retry import build_retrying
from worker.thirdparty import Placement, ThirdPartyClient, ThirdPartyError, ThirdPartyRejected
from worker.writes import WriteCombiner

logger = logging.getLogger(__name__)


class LeaseLost(Exception):
    """The order is no longer ours (the reaper recovered it after our lease expired)."""


class _Stopping(Exception):
    """Raised instead of a retry once the worker is stopping (not retried by tenacity)."""


class Processor:
    """Runs process_one(ref) for one worker thread (its own third-party session)."""

    def __init__(
        self,
        settings: Settings,
        worker_id: str,
        client: redis.Redis,
        writes: WriteCombiner,
        third_party: ThirdPartyClient,
        stop_event: threading.Event,
        held: set[str],
        held_lock: threading.Lock,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.redis = client
        self.writes = writes
        self.third_party = third_party
        self.stop_event = stop_event
        self.held = held
        self.held_lock = held_lock
        self.sleep = sleep

    # -- recording ---------------------------------------------------------------------

    def _write(self, ref: str, steps: list[store.Step], *, claim: bool = False) -> list[Update]:
        """Record steps, retrying while the database is down; LeaseLost if the CAS fails."""
        if claim:
            expect, owner = [OrderStatus.PENDING], None
        else:
            expect, owner = [OrderStatus.PROCESSING], self.worker_id
        delay = 0.1
        while True:
            try:
                # Shares a transaction and a publish with the other threads' writes.
                updates = self.writes.write(store.Transition(ref, steps, expect, owner))
                break
            except store.DB_DOWN_ERRORS as exc:
                if claim:
                    raise
                # The outcome of a call that may have placed the order must not be forgotten:
                # keep the order (heartbeats keep its lease) and try the write again.
                logger.error(
                    "cannot record %s, retrying in %.1fs: %s",
                    steps[-1].event.value,
                    delay,
                    exc,
                    extra={"ref": ref},
                )
                threading.Event().wait(delay)
                delay = min(delay * 2, 2.0)
        if updates is None:
            raise LeaseLost(ref)
        return updates

    # -- processing --------------------------------------------------------------------

    def process_one(self, ref: str) -> None:
        """Claim and process one order; a duplicate delivery or a lost claim is a no-op."""
        lease_until = utcnow() + dt.timedelta(seconds=self.settings.order_lease_seconds)
        try:
            updates = self._write(
                ref,
                [
                    store.Step(
                        Event.CLAIMED,
                        f"worker {self.worker_id}",
                        {
                            "status": OrderStatus.PROCESSING.value,
                            "worker_id": self.worker_id,
                            "lease_expires_at": lease_until,
                        },
                    )
                ],
                claim=True,
            )
        except LeaseLost:
            logger.info("not claimable (duplicate delivery or already handled)", extra={"ref": ref})
            return
        logger.info("claimed", extra={"ref": ref, "worker": self.worker_id})
        with self.held_lock:
            self.held.add(ref)
        try:
            self._place(ref, updates[-1].order)
        except LeaseLost:
            logger.warning(
                "lease lost while processing; another worker owns it now", extra={"ref": ref}
            )
        finally:
            with self.held_lock:
                self.held.discard(ref)

    def _place(self, ref: str, order: dict[str, Any]) -> None:
        attempts_done = int(order["attempts"])
        left = self.settings.third_party_max_attempts - attempts_done
        if left <= 0:
            self._cancel(ref, [], f"no third-party attempts left after {attempts_done} calls")
            return
        pending: list[store.Step] = []

        def before_sleep(state: RetryCallState) -> None:
            delay = state.next_action.sleep if state.next_action else 0.0
            metrics.RETRIES.inc()
            self._write(
                ref, [*pending, store.Step(Event.RETRY_SCHEDULED, f"retry in {delay:.2f}s")]
            )
            pending.clear()

        retrying = build_retrying(
            max_attempts=left,
            base_delay_s=self.settings.retry_base_delay_s,
            max_delay_s=self.settings.retry_max_delay_s,
            stop_event=self.stop_event,
            before_sleep=before_sleep,
            sleep=self.sleep,
        )
        try:
            for attempt in retrying:
                with attempt:
                    if self.stop_event.is_set() and attempt.retry_state.attempt_number > 1:
                        # The stop cut a backoff short: hand back instead of calling again.
                        raise _Stopping
                    number = attempts_done + attempt.retry_state.attempt_number
                    try:
                        placement = self.third_party.place(order)
                    except ThirdPartyError as exc:
                        pending[:] = [_attempt_step(number, f"failed: {exc.reason}")]
                        logger.info("attempt %d failed: %s", number, exc.reason, extra={"ref": ref})
                        raise
        except _Stopping:
            self._release(ref, pending)
            return
        except ThirdPartyRejected as exc:
            self._cancel(ref, pending, f"third party rejected the order: {exc.reason}")
            return
        except ThirdPartyError as exc:
            if self.stop_event.is_set() and number < self.settings.third_party_max_attempts:
                self._release(ref, pending)
                return
            self._cancel(
                ref, pending, f"third party unavailable after {number} attempts: {exc.reason}"
            )
            return
        self._complete(ref, number, placement)

    def _complete(self, ref: str, number: int, placement: Placement) -> None:
        self._write(
            ref,
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
        )
        metrics.OUTCOMES.labels("completed").inc()
        logger.info(
            "order completed",
            extra={"ref": ref, "attempts": number, "confirmation": placement.confirmation_id},
        )

    def _cancel(self, ref: str, pending: list[store.Step], reason: str) -> None:
        self._write(
            ref,
            [*pending, store.failed_step(reason)],
        )
        metrics.OUTCOMES.labels("cancelled").inc()
        logger.warning("order cancelled: %s", reason, extra={"ref": ref})

    def _release(self, ref: str, pending: list[store.Step]) -> None:
        """Hand an order back on shutdown: PENDING again, at the head of its list."""
        updates = self._write(
            ref,
            [
                *pending,
                store.Step(
                    Event.RELEASED,
                    f"worker {self.worker_id} shutting down",
                    {
                        "status": OrderStatus.PENDING.value,
                        "worker_id": None,
                        "lease_expires_at": None,
                        "enqueued_at": utcnow(),
                    },
                ),
            ],
        )
        priority = keys.PRIORITY_OF_NAME[updates[-1].order["transaction_type"]]
        try:
            self.redis.rpush(keys.queue_key(priority), ref)
        except REDIS_DOWN_ERRORS as exc:
            # The order is PENDING in the database: the reaper re-queues it.
            logger.error("could not hand back to the queue: %s", exc, extra={"ref": ref})
        metrics.OUTCOMES.labels("released").inc()
        logger.info("order handed back", extra={"ref": ref})


def _attempt_step(number: int, outcome: str) -> store.Step:
    return store.Step(Event.ATTEMPT, f"attempt {number} {outcome}", {"attempts": number})
