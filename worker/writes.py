"""Write combining: the consumer threads' concurrent state changes share one transaction.

A worker's threads each record two or three state changes per order. Recorded one by one,
every change pays its own BEGIN, COMMIT and publish round trip, and on SQLite they queue on
the writer lock anyway. Here the first thread to arrive leads: it takes every change waiting
(up to MAX_BATCH), applies them in one transaction (store.transition_many), publishes their
updates in one pipeline, and hands the results back. Threads that arrive meanwhile wait for
the next round, which one of them leads. Each change keeps its own compare-and-set.

A database error fails every change of the round (the transaction rolled back, nothing was
written); each caller then handles it as it would its own write. Any other error reruns the
round's changes one by one, so that one bad change cannot fail the others.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from core import store
from core.models import db
from core.updates import Update

logger = logging.getLogger(__name__)

#: The most changes applied in one transaction.
MAX_BATCH = 64

Publisher = Callable[[Sequence[Update]], None]


class _Request:
    __slots__ = ("transition", "done", "lead", "result", "error")

    def __init__(self, transition: store.Transition) -> None:
        self.transition = transition
        self.done = threading.Event()
        #: Set with `done` when this request's thread is to lead the next round.
        self.lead = False
        self.result: list[Update] | None = None
        self.error: BaseException | None = None


class WriteCombiner:
    """Shared by a worker's consumer threads; write() is called from any of them."""

    def __init__(self, publish: Publisher, max_batch: int = MAX_BATCH) -> None:
        self.publish = publish
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._waiting: list[_Request] = []
        self._leading = False
        #: Rounds and changes so far (for tests and metrics).
        self.rounds = 0
        self.changes = 0

    def write(self, transition: store.Transition) -> list[Update] | None:
        """Apply one transition (see store.transition); its updates are published on return.

        Returns None when the compare-and-set failed; raises what the write raised.
        """
        request = _Request(transition)
        with self._lock:
            self._waiting.append(request)
            lead = not self._leading
            self._leading = True
        if not lead:
            request.done.wait()
            if request.lead:
                request.done.clear()
                request.lead = False
                lead = True
        if lead:
            self._lead(request)
        if request.error is not None:
            raise request.error
        return request.result

    def _lead(self, own: _Request) -> None:
        """Run rounds until this thread's own request is done, then pass the lead on."""
        while True:
            with self._lock:
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
                if own.done.is_set() or not batch:
                    # Hand the rest to a waiting thread rather than keep serving them here.
                    self._waiting[:0] = batch
                    if self._waiting:
                        nxt = self._waiting[0]
                        nxt.lead = True
                        nxt.done.set()
                    else:
                        self._leading = False
                    return
            self._round(batch)

    def _round(self, batch: list[_Request]) -> None:
        try:
            with db.connection_context():
                try:
                    results = store.transition_many([r.transition for r in batch])
                except store.DB_DOWN_ERRORS:
                    raise
                except Exception:
                    logger.exception("a combined write failed; applying its changes one by one")
                    results = [self._alone(r) for r in batch]
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the round
            for request in batch:
                request.error = exc
                request.done.set()
            return
        self.rounds += 1
        self.changes += len(batch)
        updates = [u for result in results if result for u in result]
        if updates:
            try:
                self.publish(updates)
            except Exception:  # the publisher logs Redis outages; anything else must not hang us
                logger.exception("could not publish updates", extra={"ref": updates[0].ref})
        for request, result in zip(batch, results, strict=True):
            request.result = result
            request.done.set()

    @staticmethod
    def _alone(request: _Request) -> list[Update] | None:
        t = request.transition
        try:
            return store.transition(t.ref, t.steps, expect=t.expect, owner=t.owner)
        except Exception as exc:  # noqa: BLE001 - this caller alone gets its error
            request.error = exc
            return None
