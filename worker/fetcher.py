"""The fetcher: pops as many refs as there are free slots and claims them in one statement.

BLMPOP names the priority-1 list before the priority-2 list and pops up to COUNT refs from
the first non-empty one, so BUY orders still go before SELL orders. A process holds at most
2 x WORKER_CONCURRENCY orders (its slots): as many calls in flight, and as many claimed and
ready to start the moment a call ends. Without those, every call that ended waited a pop, a
claim and a commit for its successor, and a worker of 8 calls drained at about 1,500 orders/s
where it could do 2,000. One round trip and one transaction serve a whole batch; a Redis older
than 7.0 (no BLMPOP) gets BRPOP, one ref at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

import redis
import redis.asyncio as aioredis

from core import claims, keys, store
from core.redis_conn import REDIS_DOWN_ERRORS, Reconnect
from core.updates import Update
from worker.recorder import RunDb

logger = logging.getLogger(__name__)

#: Pop timeout: short, so the fetcher notices a stop within a second. A timeout cannot be
#: told from an unreachable host by the pop alone; the socket timeout (longer) can.
POP_TIMEOUT_S = 1


class Slots:
    """Orders in progress are bounded: the fetcher takes every free slot, each order gives its
    slot back when its call is over."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._free = count
        self._freed = asyncio.Event()

    async def take(self, timeout: float) -> int:
        """Wait up to timeout for a free slot; take every free one (0 after the timeout)."""
        if not self._free:
            self._freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._freed.wait(), timeout)
            if self._free and self._free < self.count:
                # One turn of the loop: the calls that finished with this one free their
                # slots too, and their successors share one pop and one claim.
                await asyncio.sleep(0)
        taken, self._free = self._free, 0
        return taken

    def give(self, count: int = 1) -> None:
        if count:
            self._free += count
            self._freed.set()


class DbBackoff:
    """Spaces out claims while the database is down."""

    def __init__(self, initial_s: float = 0.2, cap_s: float = 5.0) -> None:
        self.initial_s = initial_s
        self.cap_s = cap_s
        self.delay_s = 0.0

    def failed(self) -> float:
        self.delay_s = min(max(self.delay_s * 2, self.initial_s), self.cap_s)
        return self.delay_s

    def succeeded(self) -> None:
        self.delay_s = 0.0


class Fetcher:
    """Runs on the worker's event loop; hands each claimed order to `dispatch`."""

    def __init__(
        self,
        client: aioredis.Redis,
        worker_id: str,
        lease_seconds: float,
        slots: Slots,
        run_db: RunDb,
        hold: Callable[[Sequence[str]], None],
        publish: Callable[[Sequence[Update]], asyncio.Future[None]],
        dispatch: Callable[[claims.Claimed], None],
    ) -> None:
        self.redis = client
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.slots = slots
        self.run_db = run_db
        self.hold = hold
        self.publish = publish
        self.dispatch = dispatch
        self.reconnect = Reconnect("worker", initial_s=0.1, cap_s=2.0)
        self.db_backoff = DbBackoff()
        self.blmpop = True

    async def run(self, stop: asyncio.Event) -> None:
        """Pop, claim and dispatch until stop is set."""
        while not stop.is_set():
            free = await self.slots.take(timeout=POP_TIMEOUT_S)
            if not free:
                continue
            try:
                popped = await self._pop(free)
            except REDIS_DOWN_ERRORS as exc:
                self.slots.give(free)
                await _wait(stop, self.reconnect.failed(exc))
                continue
            self.reconnect.succeeded()
            if popped is None:
                self.slots.give(free)
                continue
            key, refs = popped
            self.slots.give(free - len(refs))
            if stop.is_set():
                # Popped as the stop came: not ours to start any more.
                await self._hand_back(key, refs, "worker stopping")
                self.slots.give(len(refs))
                break
            claimed = await self._claim(key, refs)
            self.slots.give(len(refs) - len(claimed))
            if claimed:
                self.hold([c.order.ref for c in claimed])
                # Handed to the outbox now, so they go out before anything the calls lead
                # to; not awaited: the calls start at once (the outbox drains at shutdown).
                self.publish([c.update for c in claimed])
                for item in claimed:
                    logger.info("claimed", extra={"ref": item.order.ref, "worker": self.worker_id})
                    self.dispatch(item)
            elif self.db_backoff.delay_s:
                await _wait(stop, self.db_backoff.delay_s)

    async def _pop(self, count: int) -> tuple[str, list[str]] | None:
        """Up to count refs from the first non-empty list (priority 1 first), oldest first."""
        names = keys.queue_keys()
        if self.blmpop:
            try:
                reply = await self.redis.blmpop(
                    POP_TIMEOUT_S, len(names), *names, direction="RIGHT", count=count
                )
            except redis.ResponseError as exc:
                if "unknown command" not in str(exc).lower():
                    raise
                logger.warning("redis has no BLMPOP (older than 7.0): popping one ref at a time")
                self.blmpop = False
            else:
                if reply is None:
                    return None
                key, refs = reply
                return str(key), [str(r) for r in refs]
        item = await self.redis.brpop(names, timeout=POP_TIMEOUT_S)
        return None if item is None else (str(item[0]), [str(item[1])])

    async def _claim(self, key: str, refs: list[str]) -> list[claims.Claimed]:
        """Claim the refs; on a database error hand them all back (nothing was claimed)."""
        try:
            claimed: list[claims.Claimed] = await self.run_db(
                claims.claim_many, refs, self.worker_id, self.lease_seconds
            )
        except store.DB_DOWN_ERRORS as exc:
            # Rolled back: the orders are PENDING (a claim whose reply was lost is recovered by
            # the reaper when its lease expires) and go back on their list.
            logger.error(
                "database unavailable, cannot claim: %s",
                exc,
                extra={"ref": refs[0], "refs": len(refs)},
            )
            await self._hand_back(key, refs, "database unavailable")
            self.db_backoff.failed()
            return []
        self.db_backoff.succeeded()
        if len(claimed) < len(refs):
            taken = {c.order.ref for c in claimed}
            for ref in refs:
                if ref not in taken:
                    logger.info(
                        "not claimable (duplicate delivery or already handled)", extra={"ref": ref}
                    )
        return claimed

    async def _hand_back(self, key: str, refs: list[str], why: str) -> None:
        """Put unclaimed refs back at the head of their list, oldest nearest the head."""
        try:
            await self.redis.rpush(key, *reversed(refs))
            for ref in refs:
                logger.info("ref handed back unclaimed: %s", why, extra={"ref": ref})
        except REDIS_DOWN_ERRORS as exc:
            # They are PENDING in the database: the reaper pushes them again.
            logger.error(
                "could not hand back %d refs (%s): %s", len(refs), why, exc, extra={"ref": refs[0]}
            )


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
