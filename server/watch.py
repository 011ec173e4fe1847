"""WatchOrder: one pub/sub subscription per process, fanned out in-process to each ref's watchers.

The hub holds a single redis.asyncio subscription to UPDATES_CHANNEL. Each message is decoded,
converted and serialized once, then appended to the small bounded queue of every watcher of
its ref; a watcher is a few slots on the RPC's own coroutine, never a task or a connection.

Pub/sub is at most once, so the stored trail is what keeps a stream whole: a sequence gap is
filled from the database, a watcher whose queue overflowed re-reads from the database, and
every watcher is re-read from the database each time the subscription is (re)established.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from core.errors import ServerShuttingDown
from core.keys import UPDATES_CHANNEL
from core.updates import Update, decode_batch
from server.convert import update_message

logger = logging.getLogger(__name__)

#: The hub's connection shows under this name in CLIENT LIST.
HUB_CLIENT_NAME = "orders-hub"
#: Live updates a watcher may hold unsent; past this it re-reads from the database instead.
WATCHER_QUEUE_LIMIT = 64
#: Silence on the subscription after which the hub PINGs, and after which it gives up on it.
PING_AFTER_S = 5.0
DEAD_AFTER_S = 15.0
RECONNECT_MIN_S = 0.1
RECONNECT_MAX_S = 5.0

#: Errors of the subscription that a reconnect may cure.
SUBSCRIPTION_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    OSError,
)


@dataclass(frozen=True)
class Backlog:
    """What the database holds for a watcher: updates to send, and whether the order is over."""

    updates: list[Update]
    finished: bool


#: Reads an order's backlog: (ref, None) -> its current state; (ref, n) -> updates after n.
BacklogReader = Callable[[str, int | None], Awaitable[Backlog]]


@dataclass(frozen=True)
class Item:
    """One live update, serialized once for every watcher of its ref."""

    sequence: int
    terminal: bool
    data: bytes


class Watcher:
    """One open WatchOrder stream: a bounded queue of live items and a wake-up event."""

    __slots__ = ("ref", "items", "wakeup", "stale", "closed")

    def __init__(self, ref: str) -> None:
        self.ref = ref
        self.items: deque[Item] = deque()
        self.wakeup = asyncio.Event()
        #: Set when live items may have been missed: the stream re-reads from the database.
        self.stale = False
        self.closed = False

    def push(self, item: Item) -> None:
        if len(self.items) >= WATCHER_QUEUE_LIMIT:
            # A slow reader must not hold memory without bound; the trail has it all.
            self.items.clear()
            self.stale = True
        else:
            self.items.append(item)
        self.wakeup.set()

    def resync(self) -> None:
        self.items.clear()
        self.stale = True
        self.wakeup.set()

    def close(self) -> None:
        self.closed = True
        self.wakeup.set()

    async def next(self) -> Item | None:
        """The next live item, or None when the stream must re-read from the database."""
        while True:
            if self.closed:
                raise ServerShuttingDown()
            if self.stale:
                self.stale = False
                return None
            if self.items:
                return self.items.popleft()
            self.wakeup.clear()
            await self.wakeup.wait()


class UpdateHub:
    """The process's one subscription to order updates and the registry of open watchers."""

    def __init__(self, redis_url: str, timeout_s: float) -> None:
        self.redis_url = redis_url
        self.timeout_s = timeout_s
        self._watchers: dict[str, set[Watcher]] = {}
        self._open = 0
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        #: How many times the subscription has been established (1 after the first).
        self.subscriptions = 0
        self.connected = False

    @property
    def open_streams(self) -> int:
        """Number of WatchOrder streams open right now."""
        return self._open

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the subscriber task (it reconnects by itself while Redis is away)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="update-hub")

    async def close(self) -> None:
        """End every open stream (UNAVAILABLE: watch again) and stop the subscription."""
        self._closing = True
        for watchers in self._watchers.values():
            for watcher in watchers:
                watcher.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- watchers -------------------------------------------------------------------------

    def _register(self, ref: str) -> Watcher:
        watcher = Watcher(ref)
        if self._closing:
            watcher.close()
        self._watchers.setdefault(ref, set()).add(watcher)
        self._open += 1
        return watcher

    def _unregister(self, watcher: Watcher) -> None:
        watchers = self._watchers.get(watcher.ref)
        if watchers is None or watcher not in watchers:
            return
        watchers.discard(watcher)
        if not watchers:
            del self._watchers[watcher.ref]
        self._open -= 1
        logger.debug("watch closed", extra={"ref": watcher.ref, "open_streams": self._open})

    async def stream(
        self, ref: str, after: int | None, read: BacklogReader
    ) -> AsyncGenerator[bytes, None]:
        """Serialized WatchOrderResponse messages: the backlog, then live changes, then stop.

        Registers before reading the database, so nothing published in between is lost;
        anything not newer than what was sent is dropped, so nothing is sent twice.
        """
        watcher = self._register(ref)
        logger.debug("watch opened", extra={"ref": ref, "open_streams": self._open})
        try:
            if watcher.closed:
                raise ServerShuttingDown()
            last = -1 if after is None else after
            backlog = await read(ref, after)
            while True:
                for update in backlog.updates:
                    if update.sequence <= last:
                        continue
                    yield update_message(update).SerializeToString()
                    last = update.sequence
                    if update.terminal:
                        return
                if backlog.finished:
                    return
                backlog = Backlog([], False)
                item = await watcher.next()
                if item is None or item.sequence > last + 1:
                    # A resync, an overflow or a gap: the stored trail has everything.
                    backlog = await read(ref, last)
                    continue
                if item.sequence <= last:
                    continue
                yield item.data
                last = item.sequence
                if item.terminal:
                    return
        finally:
            self._unregister(watcher)

    # -- the subscription ---------------------------------------------------------------------

    def _dispatch(self, raw: str) -> None:
        if not self._watchers:
            return
        try:
            records = decode_batch(raw)
        except ValueError as exc:
            logger.warning("ignoring a malformed update message: %s", exc)
            return
        for record in records:
            watchers = self._watchers.get(record.get("ref"))  # type: ignore[arg-type]
            if not watchers:
                continue
            try:
                update = Update.from_dict(record)
                data = update_message(update).SerializeToString()
            except (ValueError, KeyError, TypeError) as exc:
                logger.warning("ignoring a malformed update record: %s", exc)
                continue
            item = Item(update.sequence, update.terminal, data)
            for watcher in watchers:
                watcher.push(item)

    def _subscribed(self) -> None:
        self.subscriptions += 1
        self.connected = True
        # Whatever was published while there was no subscription is in the database only.
        for watchers in self._watchers.values():
            for watcher in watchers:
                watcher.resync()
        logger.info(
            "update hub subscribed",
            extra={"channel": UPDATES_CHANNEL, "open_streams": self._open},
        )

    async def _run(self) -> None:
        delay = RECONNECT_MIN_S
        while True:
            try:
                await self._listen()
            except SUBSCRIPTION_ERRORS as exc:
                delay = self._dropped(delay)
                logger.warning(
                    "update hub lost redis, reconnecting in %.1fs: %s",
                    delay,
                    exc,
                    extra={"open_streams": self._open},
                )
            except aioredis.RedisError as exc:
                delay = self._dropped(delay)
                logger.error("update hub: redis error, reconnecting in %.1fs: %s", delay, exc)
            except Exception:
                # The hub must outlive any surprise: every open stream depends on it.
                delay = self._dropped(delay)
                logger.exception("update hub failed, reconnecting in %.1fs", delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    def _dropped(self, delay: float) -> float:
        """The wait before the next attempt: short again after a subscription that worked."""
        was_connected, self.connected = self.connected, False
        return RECONNECT_MIN_S if was_connected else delay

    async def _listen(self) -> None:
        client = aioredis.Redis.from_url(
            self.redis_url,
            socket_connect_timeout=self.timeout_s,
            socket_timeout=self.timeout_s,
            client_name=HUB_CLIENT_NAME,
            # No silent reconnects inside redis-py: a drop must surface here to be resynced.
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(UPDATES_CHANNEL)
            await self._read(pubsub)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
            await client.aclose()

    async def _read(self, pubsub: aioredis.client.PubSub) -> None:
        loop = asyncio.get_running_loop()
        heard = loop.time()
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=1.0)
            now = loop.time()
            if message is None:
                silent = now - heard
                if silent > DEAD_AFTER_S:
                    raise redis.ConnectionError(f"no reply from redis for {silent:.0f}s")
                if silent > PING_AFTER_S and not pinged:
                    await pubsub.ping()
                    pinged = True
                continue
            heard, pinged = now, False
            kind = message["type"]
            if kind == "message":
                self._dispatch(message["data"])
            elif kind == "subscribe":
                self._subscribed()
