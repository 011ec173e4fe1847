"""The worker's updates, published in the order they were handed in.

Several parts of the loop publish (the fetcher's `claimed`, the recorder's outcomes): each
PUBLISH going out on its own pooled connection, a later one could overtake an earlier one, and
a watcher that saw `completed` before `claimed` takes it for a gap and re-reads the order's
trail from the database. So one sender takes the updates in hand-in order; what is handed in
while a PUBLISH is under way goes out in the next message, together (a burst costs a few
PUBLISH commands, not one per batch).

Pub/sub is at most once: a publish that fails is logged and dropped; watchers fill the gap from
the stored trail.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import redis.asyncio as aioredis

from core.keys import UPDATES_CHANNEL
from core.redis_conn import REDIS_DOWN_ERRORS
from core.updates import Update, encode_batch

logger = logging.getLogger(__name__)

#: Most updates in one message (one message is one allocation in every subscriber).
MAX_PER_MESSAGE = 1000


class Outbox:
    """Hand updates in with send(); they are published in that order."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client
        self._queued: list[tuple[Sequence[Update], asyncio.Future[None]]] = []
        self._sender: asyncio.Task[None] | None = None
        self.messages = 0

    def send(self, updates: Sequence[Update]) -> asyncio.Future[None]:
        """Queue the updates now (their place in the order is taken at this call); the future
        is done once their message went out (or failed, which is logged)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if not updates:
            done.set_result(None)
            return done
        self._queued.append((updates, done))
        if self._sender is None or self._sender.done():
            self._sender = loop.create_task(self._run(), name="publish-updates")
        return done

    async def drain(self) -> None:
        """Wait until everything handed in went out."""
        while self._sender is not None and not self._sender.done():
            await asyncio.shield(self._sender)

    async def _run(self) -> None:
        while self._queued:
            batch: list[tuple[Sequence[Update], asyncio.Future[None]]] = []
            size = 0
            while self._queued and (not batch or size + len(self._queued[0][0]) <= MAX_PER_MESSAGE):
                # (one hand-in is never split: its updates stay in one message)
                entry = self._queued.pop(0)
                batch.append(entry)
                size += len(entry[0])
            updates = [u for entry, _ in batch for u in entry]
            try:
                await self.redis.publish(UPDATES_CHANNEL, encode_batch(updates))
                self.messages += 1
            except REDIS_DOWN_ERRORS as exc:
                logger.warning(
                    "could not publish %d updates: %s",
                    len(updates),
                    exc,
                    extra={"ref": updates[0].ref},
                )
            except Exception:  # noqa: BLE001 - a bug must not leave the callers waiting
                logger.exception("publishing %d updates failed", len(updates))
            finally:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
