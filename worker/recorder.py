"""The recorder: writes the outcomes of a worker's calls, many per transaction.

Calls hand in prepared changes (core.claims.prepare) and go on; the recorder takes every
change waiting, writes them in one transaction on the database thread, publishes their
updates in one pipeline, then tells whoever waits and forgets the orders that are done. A
write that fails because the database is down is retried, the same changes, until it lands:
the outcome of a call that may have placed an order is never dropped (the heartbeat keeps the
leases meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core import claims, store
from core.updates import Update
from worker import metrics

logger = logging.getLogger(__name__)

#: The most changes written in one transaction.
MAX_BATCH = 256
#: Backoff while the database is down: first wait, and the cap.
RETRY_FIRST_S = 0.1
RETRY_CAP_S = 2.0

#: Runs a blocking function on the worker's database thread (in a connection context).
RunDb = Callable[..., Awaitable[Any]]


@dataclass
class Write:
    """One change handed to the recorder, and how it ended."""

    change: claims.Change
    #: Set for the last change of an order (completed, cancelled, released): the order is
    #: forgotten, counted and logged once it is written.
    outcome: str | None = None
    done: asyncio.Future[bool] | None = None
    ok: bool = False
    error: BaseException | None = field(default=None, repr=False)


class Recorder:
    """One per worker process, on its event loop."""

    def __init__(
        self,
        worker_id: str,
        run_db: RunDb,
        publish: Callable[[Sequence[Update]], Awaitable[None]],
        forget: Callable[[str], None],
    ) -> None:
        self.worker_id = worker_id
        self.run_db = run_db
        self.publish = publish
        self.forget = forget
        self._queue: asyncio.Queue[Write | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        #: Transactions and changes written so far (the shutdown log line, and tests).
        self.rounds = 0
        self.changes = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="recorder")

    async def close(self) -> None:
        """Write everything handed in so far, then stop."""
        self._queue.put_nowait(None)
        if self._task is not None:
            await self._task

    def submit(self, change: claims.Change, outcome: str | None = None) -> None:
        """Queue a change; the caller goes on at once."""
        self._queue.put_nowait(Write(change, outcome))

    async def write(self, change: claims.Change, outcome: str | None = None) -> bool:
        """Queue a change and wait until it is written; False when the order was taken over."""
        write = Write(change, outcome, done=asyncio.get_running_loop().create_future())
        self._queue.put_nowait(write)
        assert write.done is not None
        ok = await write.done
        if write.error is not None:
            raise write.error
        return ok

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            # One turn of the loop first: the answers that arrived with this one hand their
            # changes in too, and share its transaction.
            await asyncio.sleep(0)
            batch = [first]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            await self._round(batch)

    async def _round(self, batch: list[Write]) -> None:
        results = await self._record([w.change for w in batch])
        if results is None:
            results = [await self._alone(w) for w in batch]
        self.rounds += 1
        self.changes += len(batch)
        updates = [u for w, ok in zip(batch, results, strict=True) if ok for u in w.change.updates]
        if updates:
            await self.publish(updates)
        for write, ok in zip(batch, results, strict=True):
            write.ok = ok
            self._finish(write)

    async def _record(self, changes: list[claims.Change]) -> list[bool] | None:
        """Write the changes, retrying while the database is down; None after a bug."""
        delay = RETRY_FIRST_S
        while True:
            try:
                results: list[bool] = await self.run_db(claims.record, changes, self.worker_id)
                return results
            except store.DB_DOWN_ERRORS as exc:
                logger.error(
                    "cannot record %s, retrying in %.1fs: %s",
                    _what(changes),
                    delay,
                    exc,
                    extra={"ref": changes[0].ref},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_CAP_S)
            except Exception:
                logger.exception("recording a batch failed; writing its changes one by one")
                return None

    async def _alone(self, write: Write) -> bool:
        try:
            results: list[bool] = await self.run_db(claims.record, [write.change], self.worker_id)
        except Exception as exc:  # noqa: BLE001 - this write alone fails; its caller is told
            logger.exception("could not record a change", extra={"ref": write.change.ref})
            write.error = exc
            return False
        return results[0]

    def _finish(self, write: Write) -> None:
        change = write.change
        if not write.ok:
            if write.error is None:
                logger.warning(
                    "lease lost while processing; another worker owns it now",
                    extra={"ref": change.ref},
                )
            self.forget(change.ref)
        elif write.outcome is not None:
            self.forget(change.ref)
            metrics.OUTCOMES.labels(write.outcome).inc()
            _log_outcome(write.outcome, change)
        if write.done is not None and not write.done.done():
            write.done.set_result(write.ok)


def _what(changes: Sequence[claims.Change]) -> str:
    if len(changes) == 1:
        return changes[0].final.event
    return f"{len(changes)} changes"


def _log_outcome(outcome: str, change: claims.Change) -> None:
    order = change.final.order
    if outcome == "completed":
        logger.info(
            "order completed",
            extra={
                "ref": change.ref,
                "attempts": order["attempts"],
                "confirmation": order["confirmation_id"],
            },
        )
    elif outcome == "cancelled":
        logger.warning("order cancelled: %s", order["failure_reason"], extra={"ref": change.ref})
