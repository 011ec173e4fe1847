"""Concurrent PlaceOrder calls share one thread hop, one transaction and one Redis pipeline;
concurrent GetStatus calls one thread hop and one query (Batcher).

Calls that arrive while a batch is being written wait for the next batch, so a lone call is
written at once (no added delay) and a burst is written in few transactions. Each call keeps
its own answer: a replay, a domain error, or its order.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

import peewee as pw

from core import store
from core.errors import OrderError
from core.models import db
from server.placement import OrderPlacer, Placed, Prepared, accepted, outcome
from server.validation import PlaceCommand

logger = logging.getLogger(__name__)

#: Most calls written together; bounded so one transaction stays short.
MAX_BATCH = 128

K = TypeVar("K")
V = TypeVar("V")
Item = tuple[PlaceCommand, str]
Outcome = Placed | OrderError


def place_many(placer: OrderPlacer, items: Sequence[Item]) -> list[Outcome]:
    """Place several orders: one transaction for the new ones, one pipeline to queue them."""
    try:
        with db.connection_context():
            return _place_many(placer, items)
    except store.DB_DOWN_ERRORS as exc:
        # Raised before the commit (replay reads, the insert): nothing was written.
        logger.error("database error placing order: %s", exc, extra={"batch": len(items)})
        error = store.store_unavailable(exc, "nothing was written; retry later")
        return [error] * len(items)


def _place_many(placer: OrderPlacer, items: Sequence[Item]) -> list[Outcome]:
    results: list[Outcome | None] = [None] * len(items)
    batch: list[tuple[int, Prepared]] = []
    alone: list[int] = []  # placed one by one, after the batch
    keys: set[tuple[str, str]] = set()
    for i, (cmd, caller) in enumerate(items):
        key = cmd.idempotency_key
        if key is not None and (caller, key) in keys:
            alone.append(i)  # the same key twice in a batch: the second replays the first
            continue
        try:
            prepared = placer.prepare(cmd, caller)
        except OrderError as exc:
            results[i] = exc
            continue
        if isinstance(prepared, Placed):
            results[i] = prepared
        elif not prepared.queue_up:
            alone.append(i)  # Redis is down: the single path writes and cancels
        else:
            batch.append((i, prepared))
            if key is not None:
                keys.add((caller, key))
    if batch:
        try:
            store.create_orders([p.new for _, p in batch])
        except pw.IntegrityError:
            # A concurrent request took one of the keys: nothing was written; each call
            # goes alone so that only that one replays.
            alone.extend(i for i, _ in batch)
        else:
            for _, prepared in batch:
                accepted(prepared.new)
            pushed = placer.push([p.new for _, p in batch])
            for (i, _), result in zip(batch, pushed, strict=True):
                results[i] = result
    for i in sorted(alone):
        cmd, caller = items[i]
        results[i] = outcome(functools.partial(placer.place, cmd, caller))
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


class Batcher(Generic[K, V]):
    """Concurrent calls of one kind share one thread hop: calls that arrive while a batch runs
    form the next one (a lone call runs at once; at most MAX_BATCH, one batch at a time).

    `run_many(keys)` answers each key, in order, with its value or its domain error; if it
    raises (the database down for a read, or a bug) every call of the batch gets that error
    rather than hanging. dedupe=True: equal keys share one answer (reads); otherwise each call
    is its own item (placements: two equal commands are two orders).
    """

    def __init__(
        self,
        run_many: Callable[[list[K]], Sequence[V | OrderError]],
        executor: ThreadPoolExecutor,
        name: str,
        *,
        dedupe: bool = False,
    ) -> None:
        self.run_many = run_many
        self.executor = executor
        self.name = name
        self.dedupe = dedupe
        self._pending: list[tuple[K, asyncio.Future[V]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, key: K) -> V:
        """The answer for key, from the next batch; raises its domain error."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V] = loop.create_future()
        self._pending.append((key, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain(), name=self.name)
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch = self._pending[:MAX_BATCH]
            del self._pending[:MAX_BATCH]
            keys = [key for key, _ in batch]
            todo = list(dict.fromkeys(keys)) if self.dedupe else keys
            answers: Sequence[V | BaseException]
            try:
                answers = await loop.run_in_executor(self.executor, self.run_many, todo)
            except Exception as exc:  # noqa: BLE001 - every call of the batch hears it
                if not isinstance(exc, OrderError):
                    logger.exception("%s: a batch of %d failed", self.name, len(todo))
                answers = [exc] * len(todo)
            if self.dedupe:
                by_key = dict(zip(todo, answers, strict=True))
                answers = [by_key[key] for key in keys]
            for (_, future), answer in zip(batch, answers, strict=True):
                if future.done():
                    continue  # the caller went away; what was done for it (an order) stands
                if isinstance(answer, BaseException):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)
