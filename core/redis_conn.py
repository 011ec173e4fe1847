"""Redis clients with short, explicit timeouts (a dead Redis must fail fast, not hang).

`Reconnect` is the shared backoff for code that keeps going while Redis is away: it logs the
outage once, spaces the probes out exponentially and logs the recovery.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger(__name__)

#: Errors that mean "Redis cannot be reached right now".
REDIS_DOWN_ERRORS: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)


def make_redis(url: str, timeout_s: float, *, read_timeout_s: float | None = None) -> redis.Redis:
    """A sync client; one immediate retry covers a pooled socket left dead by a restart.

    Only connection errors are retried: a timeout means a hung server, and retrying it would
    double the time a caller waits before it can answer.
    """
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout_s,
        socket_timeout=read_timeout_s if read_timeout_s is not None else timeout_s,
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        health_check_interval=30,
        decode_responses=True,
    )


def make_async_redis(
    url: str, timeout_s: float, *, read_timeout_s: float | None = None
) -> aioredis.Redis:
    """The redis.asyncio twin of make_redis (same timeouts, same single retry)."""
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=timeout_s,
        socket_timeout=read_timeout_s if read_timeout_s is not None else timeout_s,
        retry=AsyncRetry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        health_check_interval=30,
        decode_responses=True,
    )


class Reconnect:
    """Backoff state for one user of Redis; thread-safe.

    While Redis is down, `ready()` is true only once per backoff delay (initial, doubling up
    to cap), so callers probe instead of hammering; `failed` and `succeeded` log the edges.
    """

    def __init__(
        self,
        what: str,
        initial_s: float = 0.1,
        cap_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.initial_s = initial_s
        self.cap_s = cap_s
        self.clock = clock
        self.lock = threading.Lock()
        self.delay_s = 0.0
        self.next_probe = 0.0
        self.down_since: float | None = None

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def ready(self) -> bool:
        """True when Redis is believed up, or when the next probe is due."""
        with self.lock:
            if self.down_since is None:
                return True
            if self.clock() >= self.next_probe:
                # This caller is the probe; the others keep waiting until it reports.
                self.next_probe = self.clock() + self.delay_s
                return True
            return False

    def failed(self, exc: Exception) -> float:
        """Record a failure; returns the delay before the next probe."""
        with self.lock:
            now = self.clock()
            if self.down_since is None:
                self.down_since = now
                self.delay_s = self.initial_s
                logger.warning("redis unreachable (%s): %s", self.what, exc)
            elif self.delay_s < self.cap_s:
                # Logged while the delay grows, then quiet until the recovery.
                self.delay_s = min(self.delay_s * 2, self.cap_s)
                logger.info(
                    "redis still unreachable (%s), next try in %.1fs: %s",
                    self.what,
                    self.delay_s,
                    exc,
                )
            self.next_probe = now + self.delay_s
            return self.delay_s

    def succeeded(self) -> None:
        """Record a success; logs the recovery after an outage."""
        if self.down_since is None:
            return
        with self.lock:
            if self.down_since is None:
                return
            logger.info(
                "redis reachable again (%s) after %.1fs",
                self.what,
                self.clock() - self.down_since,
            )
            self.down_since = None
            self.delay_s = 0.0
